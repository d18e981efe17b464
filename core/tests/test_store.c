#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "junction/store.h"

#include "test_tmpdir.h"

typedef struct {
    char dir[256];
    char path[300];
    jn_store_t *store;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    tt_tmpdir(f->dir, sizeof(f->dir), "jn-store");
    snprintf(f->path, sizeof(f->path), "%s/junction.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    jn_store_close(f->store);
    tt_rmtree(f->dir);
    free(f);
    return 0;
}

static jn_store_t *open_ok(fixture_t *f)
{
    char err[512] = "";

    f->store = jn_store_open_sqlite(f->path, err, sizeof(err));
    if (f->store == NULL)
        fail_msg("open failed: %s", err);
    return f->store;
}

static void reopen(fixture_t *f)
{
    jn_store_close(f->store);
    f->store = NULL;
    open_ok(f);
}

/* Runs SQL on the file directly, bypassing the store. */
static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

static long long raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Column `col` of the first row of `sql`, run on the file directly, into buf. */
static void raw_text(const char *path, const char *sql, int col, char *buf, size_t len)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    buf[0] = '\0';
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, col) != NULL)
        snprintf(buf, len, "%s", (const char *)sqlite3_column_text(st, col));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static jn_evidence_t evidence(const char *id, const char *integration, const char *data)
{
    jn_evidence_t e = {
        .id = id,
        .organization_id = "org-1",
        .integration_id = integration,
        .provider_type = "github",
        .resource_type = "repository",
        .resource_id = id,
        .collected_at = "2026-11-25T16:55:09.123Z",
        .run_id = "run-1",
        .connector_version = "1.2.0",
        .checksum = "abc123",
        .data = data,
    };
    return e;
}

static void put_evidence(jn_store_t *s, const char *id, const char *integration, int expect)
{
    jn_evidence_t e = evidence(id, integration, "{\"a\":1}");
    int inserted = -1;

    assert_int_equal(jn_store_evidence_put(s, &e, &inserted), 0);
    assert_int_equal(inserted, expect);
}

static int64_t count(jn_store_t *s, const char *integration)
{
    int64_t n = -1;

    assert_int_equal(jn_store_evidence_count(s, integration, &n), 0);
    return n;
}

/* ---- migrations ---- */

static void test_migrations_on_fresh_file(void **state)
{
    fixture_t *f = *state;
    jn_store_t *s = open_ok(f);

    assert_true(jn_store_sqlite_latest_version() >= 1);
    assert_int_equal(jn_store_schema_version(s), jn_store_sqlite_latest_version());
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), jn_store_sqlite_latest_version());
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM schema_migrations"),
                     jn_store_sqlite_latest_version());
    assert_true(raw_int(f->path, "SELECT applied_at FROM schema_migrations WHERE version = 1") > 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name IN"
                                      " ('checkpoints', 'evidence', 'jobs', 'evidence_resource',"
                                      " 'jobs_integration_created')"),
                     5);
    assert_string_equal(s->ops->name, "sqlite");
}

static void test_reopen_is_noop(void **state)
{
    fixture_t *f = *state;
    long long applied;

    open_ok(f);
    applied = raw_int(f->path, "SELECT applied_at FROM schema_migrations WHERE version = 1");
    reopen(f);
    reopen(f);
    assert_int_equal(jn_store_schema_version(f->store), jn_store_sqlite_latest_version());
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM schema_migrations"),
                     jn_store_sqlite_latest_version());
    assert_int_equal(raw_int(f->path, "SELECT applied_at FROM schema_migrations WHERE version = 1"),
                     applied);
}

static void test_newer_schema_refused(void **state)
{
    fixture_t *f = *state;
    char err[512] = "", sql[64], expect[160];
    int newer = jn_store_sqlite_latest_version() + 5;

    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", newer);
    raw_exec(f->path, sql);
    assert_null(jn_store_open_sqlite(f->path, err, sizeof(err)));
    snprintf(expect, sizeof(expect),
             "schema version %d is newer than this build supports (latest %d)", newer,
             jn_store_sqlite_latest_version());
    assert_non_null(strstr(err, expect));
    assert_non_null(strstr(err, f->path));
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), newer);
}

static void test_failing_migration_rolls_back(void **state)
{
    fixture_t *f = *state;
    char err[512] = "";

    /* A table in the way makes migration 1 fail half-way through its script. */
    raw_exec(f->path, "CREATE TABLE jobs (x)");
    assert_null(jn_store_open_sqlite(f->path, err, sizeof(err)));
    assert_non_null(strstr(err, "migration 1 ("));
    assert_non_null(strstr(err, "rolled back"));
    assert_non_null(strstr(err, "table jobs already exists"));
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name IN"
                                      " ('schema_migrations', 'checkpoints', 'evidence')"),
                     0);
}

/* Migration 6: the queue's group index covers only rows with a group (a
 * webhook delivery has none), and the coalescing lookup (group_key = ?) still
 * uses it, also on a file that had the full index before the upgrade. */
static void test_queue_group_index_partial(void **state)
{
    fixture_t *f = *state;
    const char *plan = "EXPLAIN QUERY PLAN SELECT id FROM queue_jobs"
                       " WHERE group_key = 'gh-1' AND state = 'queued' LIMIT 1";
    char text[512];

    open_ok(f);
    raw_text(f->path, "SELECT sql FROM sqlite_master WHERE name = 'queue_group'", 0, text,
             sizeof(text));
    assert_non_null(strstr(text, "WHERE group_key IS NOT NULL"));
    jn_store_close(f->store);
    f->store = NULL;
    /* back to version 5's index, with a row of each kind */
    raw_exec(f->path, "DROP INDEX queue_group;"
                      "CREATE INDEX queue_group ON queue_jobs(group_key, state);"
                      "DROP INDEX queue_dead;"
                      "CREATE INDEX queue_state ON queue_jobs(state, provider, seq);"
                      "DROP INDEX jobs_integration_created;"
                      "CREATE INDEX jobs_integration ON jobs(integration_id);"
                      "DELETE FROM schema_migrations WHERE version >= 6;"
                      "PRAGMA user_version = 5;"
                      "INSERT INTO queue_jobs(id, group_key, provider, organization_id,"
                      " priority, payload, state, ready_ms, enqueued_ms, max_attempts)"
                      " VALUES('job-a', 'gh-1', 'github', 'org-1', 1, '{}', 'queued', 1, 1, 3),"
                      " ('job-b', NULL, 'webhook:github', 'org-1', 0, '{}', 'queued', 1, 1, 3);");
    open_ok(f);
    assert_int_equal(jn_store_schema_version(f->store), jn_store_sqlite_latest_version());
    assert_true(jn_store_sqlite_latest_version() >= 6);
    raw_text(f->path, "SELECT sql FROM sqlite_master WHERE name = 'queue_group'", 0, text,
             sizeof(text));
    assert_non_null(strstr(text, "WHERE group_key IS NOT NULL"));
    raw_text(f->path, plan, 3, text, sizeof(text));
    if (strstr(text, "queue_group") == NULL)
        fail_msg("the coalescing lookup does not use queue_group: %s", text);
    raw_text(f->path,
             "SELECT id FROM queue_jobs WHERE group_key = 'gh-1' AND state = 'queued' LIMIT 1", 0,
             text, sizeof(text));
    assert_string_equal(text, "job-a");
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM queue_jobs"), 2);
}

/* Migration 7: no state index; the statistics read live rows through the
 * claim index and dead ones through the dead-letter index, never scanning
 * the table (whose rows are mostly done), and count right. */
static void test_queue_stats_without_state_index(void **state)
{
    fixture_t *f = *state;
    char text[2048], sql[2200];
    const char *stats = "SELECT provider, priority, sum(queued), sum(ready), sum(running),"
                        " sum(dead), min(oldest) FROM ("
                        " SELECT provider, priority, state = 'queued' AS queued,"
                        "  state = 'queued' AND ready_ms <= 50 AS ready,"
                        "  state = 'running' AS running, 0 AS dead,"
                        "  CASE WHEN state = 'queued' THEN enqueued_ms END AS oldest"
                        "  FROM queue_jobs INDEXED BY queue_claim"
                        "  WHERE state IN ('queued', 'running')"
                        " UNION ALL SELECT provider, priority, 0, 0, 0, 1, NULL"
                        "  FROM queue_jobs INDEXED BY queue_dead WHERE state = 'dead')"
                        " GROUP BY provider, priority ORDER BY provider, priority";
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    open_ok(f);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master"
                                      " WHERE name = 'queue_state'"),
                     0);
    raw_text(f->path, "SELECT sql FROM sqlite_master WHERE name = 'queue_dead'", 0, text,
             sizeof(text));
    assert_non_null(strstr(text, "WHERE state = 'dead'"));
    raw_exec(f->path, "INSERT INTO queue_jobs(id, provider, organization_id, priority, payload,"
                      " state, ready_ms, enqueued_ms, max_attempts) VALUES"
                      " ('a', 'github', 'o', 1, '{}', 'queued', 10, 10, 3),"
                      " ('b', 'github', 'o', 1, '{}', 'queued', 90, 20, 3),"
                      " ('c', 'github', 'o', 1, '{}', 'running', 10, 5, 3),"
                      " ('d', 'github', 'o', 1, '{}', 'dead', 10, 1, 3),"
                      " ('e', 'github', 'o', 1, '{}', 'done', 10, 1, 3),"
                      " ('f', 'okta', 'o', 0, '{}', 'dead', 10, 1, 3),"
                      " ('g', 'okta', 'o', 0, '{}', 'cancelled', 10, 1, 3);");
    /* the plan reads through the two indexes */
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    snprintf(sql, sizeof(sql), "EXPLAIN QUERY PLAN %s", stats);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    text[0] = '\0';
    while (sqlite3_step(st) == SQLITE_ROW) {
        size_t n = strlen(text);
        snprintf(text + n, sizeof(text) - n, "%s | ", (const char *)sqlite3_column_text(st, 3));
    }
    sqlite3_finalize(st);
    if (strstr(text, "USING INDEX queue_claim") == NULL ||
        strstr(text, "USING INDEX queue_dead") == NULL)
        fail_msg("the statistics do not read through the queue indexes: %s", text);
    /* the figures: github 1: 2 queued (1 ready at 50), 1 running, 1 dead,
     * oldest queued enqueued at 10; okta 0: 1 dead */
    assert_int_equal(sqlite3_prepare_v2(db, stats, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "github");
    assert_int_equal(sqlite3_column_int(st, 2), 2);
    assert_int_equal(sqlite3_column_int(st, 3), 1);
    assert_int_equal(sqlite3_column_int(st, 4), 1);
    assert_int_equal(sqlite3_column_int(st, 5), 1);
    assert_int_equal(sqlite3_column_int(st, 6), 10);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "okta");
    assert_int_equal(sqlite3_column_int(st, 2), 0);
    assert_int_equal(sqlite3_column_int(st, 5), 1);
    assert_true(sqlite3_column_type(st, 6) == SQLITE_NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Migration 9: the queue's state rule is checked without a temporary b-tree
 * per row (no OpenEphemeral in the insert's program), still refuses an
 * unknown state, and the rebuild keeps every row, column and index of a file
 * written before it. */
static void test_queue_state_check_rebuilt(void **state)
{
    fixture_t *f = *state;
    const char *insert = "INSERT INTO queue_jobs(id, idempotency_key, provider, organization_id,"
                         " priority, payload, state, ready_ms, enqueued_ms, max_attempts)"
                         " VALUES('x', 'k', 'p', 'o', 1, '{}', 'queued', 1, 1, 3)";
    char text[1024], sql[1200];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int ephemeral = 0;

    open_ok(f);
    raw_text(f->path, "SELECT sql FROM sqlite_master WHERE name = 'queue_jobs'", 0, text,
             sizeof(text));
    assert_null(strstr(text, "state IN"));
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    snprintf(sql, sizeof(sql), "EXPLAIN %s", insert);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW)
        ephemeral += strcmp((const char *)sqlite3_column_text(st, 1), "OpenEphemeral") == 0;
    sqlite3_finalize(st);
    assert_int_equal(ephemeral, 0);
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO queue_jobs(id, provider, organization_id,"
                                  " priority, payload, state, ready_ms, enqueued_ms,"
                                  " max_attempts) VALUES('y', 'p', 'o', 1, '{}', 'paused', 1,"
                                  " 1, 3)",
                                  NULL, NULL, NULL),
                     SQLITE_CONSTRAINT);
    assert_non_null(strstr(sqlite3_errmsg(db), "CHECK constraint failed"));
    sqlite3_close(db);
    jn_store_close(f->store);
    f->store = NULL;

    /* back to version 8's table (the IN rule), with rows in several states */
    raw_exec(f->path,
             "DROP TABLE queue_jobs;"
             "CREATE TABLE queue_jobs (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
             " idempotency_key TEXT UNIQUE, group_key TEXT, provider TEXT NOT NULL,"
             " organization_id TEXT NOT NULL,"
             " priority INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 2),"
             " payload TEXT NOT NULL, state TEXT NOT NULL"
             " CHECK (state IN ('queued', 'running', 'done', 'dead', 'cancelled')),"
             " ready_ms INTEGER NOT NULL, enqueued_ms INTEGER NOT NULL,"
             " attempts INTEGER NOT NULL DEFAULT 0,"
             " max_attempts INTEGER NOT NULL CHECK (max_attempts > 0), consumer TEXT,"
             " cancel_requested INTEGER NOT NULL DEFAULT 0, last_error TEXT,"
             " finished_ms INTEGER);"
             "CREATE INDEX queue_claim ON queue_jobs(provider, priority, organization_id,"
             " enqueued_ms) WHERE state IN ('queued', 'running');"
             "CREATE INDEX queue_group ON queue_jobs(group_key, state)"
             " WHERE group_key IS NOT NULL;"
             "CREATE INDEX queue_consumer ON queue_jobs(consumer) WHERE state = 'running';"
             "CREATE INDEX queue_dead ON queue_jobs(provider, seq) WHERE state = 'dead';"
             "INSERT INTO queue_jobs VALUES"
             " (7, 'a', 'key-a', 'g-1', 'github', 'o-1', 2, '{\"n\":1}', 'running', 5, 4, 1, 3,"
             "  'worker-1', 1, NULL, NULL),"
             " (9, 'b', NULL, NULL, 'okta', 'o-2', 0, '{}', 'dead', 6, 5, 3, 3, NULL, 0,"
             "  'HTTP 500', 77);"
             "DELETE FROM schema_migrations WHERE version >= 9;"
             "PRAGMA user_version = 8;");
    open_ok(f);
    assert_int_equal(jn_store_schema_version(f->store), jn_store_sqlite_latest_version());
    raw_text(f->path, "SELECT sql FROM sqlite_master WHERE name = 'queue_jobs'", 0, text,
             sizeof(text));
    assert_null(strstr(text, "state IN"));
    raw_text(f->path,
             "SELECT group_concat(seq || ',' || id || ',' || ifnull(idempotency_key, '-') || ','"
             " || ifnull(group_key, '-') || ',' || provider || ',' || organization_id || ','"
             " || priority || ',' || payload || ',' || state || ',' || ready_ms || ','"
             " || enqueued_ms || ',' || attempts || ',' || max_attempts || ','"
             " || ifnull(consumer, '-') || ',' || cancel_requested || ','"
             " || ifnull(last_error, '-') || ',' || ifnull(finished_ms, '-'), ' | ')"
             " FROM (SELECT * FROM queue_jobs ORDER BY seq)",
             0, text, sizeof(text));
    assert_string_equal(text, "7,a,key-a,g-1,github,o-1,2,{\"n\":1},running,5,4,1,3,worker-1,1,-,-"
                              " | 9,b,-,-,okta,o-2,0,{},dead,6,5,3,3,-,0,HTTP 500,77");
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE tbl_name ="
                                      " 'queue_jobs' AND type = 'index' AND name IN"
                                      " ('queue_claim', 'queue_group', 'queue_consumer',"
                                      " 'queue_dead')"),
                     4);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master"
                                      " WHERE name = 'queue_jobs_new'"),
                     0);
    /* the unique keys hold after the rebuild, and a new row takes the next seq */
    raw_exec(f->path, "INSERT INTO queue_jobs(id, idempotency_key, provider, organization_id,"
                      " priority, payload, state, ready_ms, enqueued_ms, max_attempts)"
                      " VALUES('c', 'key-a', 'github', 'o-1', 1, '{}', 'queued', 1, 1, 3)"
                      " ON CONFLICT(idempotency_key) DO NOTHING");
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM queue_jobs"), 2);
    raw_exec(f->path, insert);
    assert_int_equal(raw_int(f->path, "SELECT seq FROM queue_jobs WHERE id = 'x'"), 10);
}

/* Migration 8: an integration's newest jobs come from one index in order
 * (no sort of all its jobs, no scan of the table). */
static void test_integration_jobs_in_index_order(void **state)
{
    fixture_t *f = *state;
    char text[1024] = "";
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    open_ok(f);
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db,
                           "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE integration_id = 'i'"
                           " AND (NULL IS NULL OR status = NULL)"
                           " ORDER BY created_ms DESC, rowid DESC LIMIT 1",
                           -1, &st, NULL),
        SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        size_t n = strlen(text);
        snprintf(text + n, sizeof(text) - n, "%s | ", (const char *)sqlite3_column_text(st, 3));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (strstr(text, "jobs_integration_created") == NULL || strstr(text, "TEMP B-TREE") != NULL)
        fail_msg("an integration's newest job is not read in index order: %s", text);
}

static void test_not_a_database(void **state)
{
    fixture_t *f = *state;
    char err[512] = "";
    FILE *fp = fopen(f->path, "w");

    assert_non_null(fp);
    fputs("this is not a database, just some text long enough to have a header\n", fp);
    fclose(fp);
    assert_null(jn_store_open_sqlite(f->path, err, sizeof(err)));
    assert_non_null(strstr(err, f->path));
    assert_non_null(strstr(err, "not a database"));
}

static void test_open_missing_directory(void **state)
{
    fixture_t *f = *state;
    char err[512] = "", path[400];

    snprintf(path, sizeof(path), "%s/missing/junction.db", f->dir);
    assert_null(jn_store_open_sqlite(path, err, sizeof(err)));
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "unable to open"));
}

static void test_wal_mode(void **state)
{
    fixture_t *f = *state;
    char wal[400];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    open_ok(f);
    put_evidence(f->store, "e1", "i1", 1);
    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    assert_int_equal(access(wal, F_OK), 0);
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* ---- checkpoints ---- */

static void test_checkpoint_missing(void **state)
{
    fixture_t *f = *state;
    char *cursor = (char *)"sentinel";

    open_ok(f);
    assert_int_equal(jn_store_checkpoint_get(f->store, "nope", &cursor), 1);
    assert_null(cursor);
}

static void test_checkpoint_set_get_overwrite(void **state)
{
    fixture_t *f = *state;
    char *cursor = NULL;

    open_ok(f);
    assert_int_equal(jn_store_checkpoint_set(f->store, "i1", "page=2"), 0);
    assert_int_equal(jn_store_checkpoint_set(f->store, "i2", "other"), 0);
    assert_int_equal(jn_store_checkpoint_get(f->store, "i1", &cursor), 0);
    assert_string_equal(cursor, "page=2");
    free(cursor);
    assert_int_equal(jn_store_checkpoint_set(f->store, "i1", "page=3"), 0);
    assert_int_equal(jn_store_checkpoint_get(f->store, "i1", &cursor), 0);
    assert_string_equal(cursor, "page=3");
    free(cursor);
    assert_int_equal(jn_store_checkpoint_get(f->store, "i2", &cursor), 0);
    assert_string_equal(cursor, "other");
    free(cursor);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM checkpoints"), 2);
    assert_true(raw_int(f->path, "SELECT updated_at FROM checkpoints WHERE integration_id = 'i1'") >
                0);
}

static void test_checkpoint_null_arguments(void **state)
{
    fixture_t *f = *state;

    open_ok(f);
    assert_int_equal(jn_store_checkpoint_set(f->store, "i1", NULL), -1);
    assert_string_equal(jn_store_errmsg(f->store), "checkpoint_set 'i1': cursor is NULL");
}

/* ---- evidence ---- */

static void test_evidence_idempotent(void **state)
{
    fixture_t *f = *state;

    open_ok(f);
    put_evidence(f->store, "e1", "i1", 1);
    put_evidence(f->store, "e1", "i1", 0);
    put_evidence(f->store, "e1", "i2", 0);
    put_evidence(f->store, "e2", "i1", 1);
    assert_int_equal(count(f->store, NULL), 2);
}

static void test_evidence_put_requires_data(void **state)
{
    fixture_t *f = *state;
    jn_evidence_t e = evidence("e1", "i1", NULL);
    int inserted = -1;

    open_ok(f);
    assert_int_equal(jn_store_evidence_put(f->store, &e, &inserted), -1);
    assert_int_equal(inserted, 0);
    assert_string_equal(jn_store_errmsg(f->store), "evidence_put 'e1': data is NULL");
}

static void test_evidence_count(void **state)
{
    fixture_t *f = *state;

    open_ok(f);
    assert_int_equal(count(f->store, NULL), 0);
    assert_int_equal(count(f->store, "i1"), 0);
    put_evidence(f->store, "a1", "i1", 1);
    put_evidence(f->store, "a2", "i1", 1);
    put_evidence(f->store, "a3", "i1", 1);
    put_evidence(f->store, "b1", "i2", 1);
    assert_int_equal(count(f->store, "i1"), 3);
    assert_int_equal(count(f->store, "i2"), 1);
    assert_int_equal(count(f->store, "i3"), 0);
    assert_int_equal(count(f->store, NULL), 4);
}

typedef struct {
    char ids[8][16];
    int n;
    int stop_after;
    jn_store_t *store;
    int nested_rc;
} collect_t;

static int collect(void *ud, const jn_evidence_t *e)
{
    collect_t *c = ud;

    snprintf(c->ids[c->n++], sizeof(c->ids[0]), "%s", e->id);
    return c->stop_after > 0 && c->n >= c->stop_after;
}

static void test_evidence_each_order_and_stop(void **state)
{
    fixture_t *f = *state;
    collect_t all = {0}, one = {0}, early = {0};
    const char *order[] = {"z", "a", "m", "b"};
    int i;

    open_ok(f);
    for (i = 0; i < 4; i++)
        put_evidence(f->store, order[i], i == 3 ? "i2" : "i1", 1);

    assert_int_equal(jn_store_evidence_each(f->store, NULL, collect, &all), 0);
    assert_int_equal(all.n, 4);
    for (i = 0; i < 4; i++)
        assert_string_equal(all.ids[i], order[i]);

    assert_int_equal(jn_store_evidence_each(f->store, "i1", collect, &one), 0);
    assert_int_equal(one.n, 3);
    assert_string_equal(one.ids[0], "z");
    assert_string_equal(one.ids[1], "a");
    assert_string_equal(one.ids[2], "m");

    early.stop_after = 2;
    assert_int_equal(jn_store_evidence_each(f->store, "i1", collect, &early), 0);
    assert_int_equal(early.n, 2);
    assert_string_equal(early.ids[1], "a");

    /* The statement was reset after the early stop: a new pass starts over. */
    memset(&early, 0, sizeof(early));
    assert_int_equal(jn_store_evidence_each(f->store, "i1", collect, &early), 0);
    assert_int_equal(early.n, 3);
}

static int check_fields(void *ud, const jn_evidence_t *e)
{
    int *seen = ud;

    assert_string_equal(e->id, "full");
    assert_string_equal(e->organization_id, "org-1");
    assert_string_equal(e->integration_id, "i1");
    assert_string_equal(e->provider_type, "github");
    assert_string_equal(e->resource_type, "repository");
    assert_string_equal(e->resource_id, "full");
    assert_string_equal(e->collected_at, "2026-11-25T16:55:09.123Z");
    assert_string_equal(e->run_id, "run-1");
    assert_string_equal(e->connector_version, "1.2.0");
    assert_null(e->checksum);
    assert_string_equal(e->data, "{\"k\":\"v\"}");
    (*seen)++;
    return 0;
}

static void test_evidence_fields_round_trip(void **state)
{
    fixture_t *f = *state;
    jn_evidence_t e = evidence("full", "i1", "{\"k\":\"v\"}");
    int inserted = 0, seen = 0;

    open_ok(f);
    e.checksum = NULL;
    assert_int_equal(jn_store_evidence_put(f->store, &e, &inserted), 0);
    assert_int_equal(jn_store_evidence_each(f->store, "i1", check_fields, &seen), 0);
    assert_int_equal(seen, 1);
}

static int nested_each(void *ud, const jn_evidence_t *e)
{
    collect_t *c = ud;

    (void)e;
    c->nested_rc = jn_store_evidence_each(c->store, NULL, collect, c);
    return 1;
}

static void test_evidence_each_not_reentrant(void **state)
{
    fixture_t *f = *state;
    collect_t c = {0};

    open_ok(f);
    put_evidence(f->store, "e1", "i1", 1);
    c.store = f->store;
    assert_int_equal(jn_store_evidence_each(f->store, NULL, nested_each, &c), 0);
    assert_int_equal(c.nested_rc, -1);
    assert_non_null(strstr(jn_store_errmsg(f->store), "called from its own callback"));
}

/* ---- jobs ---- */

static jn_job_record_t job(const char *id, jn_job_status_t status)
{
    jn_job_record_t j = {
        .id = id,
        .organization_id = "org-1",
        .integration_id = "i1",
        .provider_type = "github",
        .connector_version = "1.2.0",
        .kind = "collect",
        .status = status,
        .created_ms = 1795625709123LL,
        .started_ms = 1795625709200LL,
        .finished_ms = 0,
        .items = 0,
        .pages = 0,
        .error = NULL,
    };
    return j;
}

static void test_job_put_get(void **state)
{
    fixture_t *f = *state;
    jn_job_record_t in = job("job-1", JN_JOB_RUNNING), out;
    char *strings = NULL;

    open_ok(f);
    assert_int_equal(jn_store_job_put(f->store, &in), 0);
    assert_int_equal(jn_store_job_get(f->store, "job-1", &out, &strings), 0);
    assert_non_null(strings);
    assert_string_equal(out.id, "job-1");
    assert_string_equal(out.organization_id, "org-1");
    assert_string_equal(out.integration_id, "i1");
    assert_string_equal(out.provider_type, "github");
    assert_string_equal(out.connector_version, "1.2.0");
    assert_string_equal(out.kind, "collect");
    assert_int_equal(out.status, JN_JOB_RUNNING);
    assert_int_equal(out.created_ms, 1795625709123LL);
    assert_int_equal(out.started_ms, 1795625709200LL);
    assert_null(out.error);
    free(strings);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM jobs WHERE status = 'running'"), 1);
}

static void test_job_replace(void **state)
{
    fixture_t *f = *state;
    jn_job_record_t in = job("job-1", JN_JOB_RUNNING), out;
    char *strings = NULL;

    open_ok(f);
    assert_int_equal(jn_store_job_put(f->store, &in), 0);
    in.status = JN_JOB_PARTIAL;
    in.finished_ms = 1795625719123LL;
    in.items = 1234;
    in.pages = 13;
    in.error = "rate limited: retry budget spent";
    assert_int_equal(jn_store_job_put(f->store, &in), 0);
    assert_int_equal(jn_store_job_get(f->store, "job-1", &out, &strings), 0);
    assert_int_equal(out.status, JN_JOB_PARTIAL);
    assert_int_equal(out.finished_ms, 1795625719123LL);
    assert_int_equal(out.items, 1234);
    assert_int_equal(out.pages, 13);
    assert_string_equal(out.error, "rate limited: retry budget spent");
    assert_string_equal(out.kind, "collect");
    free(strings);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM jobs"), 1);
}

static void test_job_missing(void **state)
{
    fixture_t *f = *state;
    jn_job_record_t out;
    char *strings = (char *)"sentinel";

    open_ok(f);
    assert_int_equal(jn_store_job_get(f->store, "nope", &out, &strings), 1);
    assert_null(strings);
}

static void test_job_invalid_status(void **state)
{
    fixture_t *f = *state;
    jn_job_record_t in = job("job-1", (jn_job_status_t)42);

    open_ok(f);
    assert_int_equal(jn_store_job_put(f->store, &in), -1);
    assert_string_equal(jn_store_errmsg(f->store), "job_put 'job-1': invalid status");
}

static void test_job_status_names(void **state)
{
    int i;

    (void)state;
    assert_string_equal(jn_job_status_name(JN_JOB_QUEUED), "queued");
    assert_string_equal(jn_job_status_name(JN_JOB_SUCCEEDED), "succeeded");
    assert_string_equal(jn_job_status_name(JN_JOB_CANCELLED), "cancelled");
    assert_string_equal(jn_job_status_name((jn_job_status_t)99), "unknown");
    for (i = JN_JOB_QUEUED; i <= JN_JOB_CANCELLED; i++)
        assert_int_equal(jn_job_status_parse(jn_job_status_name((jn_job_status_t)i)), i);
    assert_int_equal(jn_job_status_parse("bogus"), -1);
    assert_int_equal(jn_job_status_parse(NULL), -1);
}

/* ---- transactions, durability ---- */

static void test_rollback_discards_together(void **state)
{
    fixture_t *f = *state;
    char *cursor = NULL;

    open_ok(f);
    assert_int_equal(jn_store_checkpoint_set(f->store, "i1", "before"), 0);
    assert_int_equal(jn_store_begin(f->store), 0);
    put_evidence(f->store, "e1", "i1", 1);
    put_evidence(f->store, "e2", "i1", 1);
    assert_int_equal(jn_store_checkpoint_set(f->store, "i1", "after"), 0);
    assert_int_equal(count(f->store, "i1"), 2);
    assert_int_equal(jn_store_rollback(f->store), 0);

    assert_int_equal(count(f->store, "i1"), 0);
    assert_int_equal(jn_store_checkpoint_get(f->store, "i1", &cursor), 0);
    assert_string_equal(cursor, "before");
    free(cursor);

    assert_int_equal(jn_store_begin(f->store), 0);
    put_evidence(f->store, "e1", "i1", 1);
    assert_int_equal(jn_store_checkpoint_set(f->store, "i1", "after"), 0);
    assert_int_equal(jn_store_commit(f->store), 0);
    reopen(f);
    assert_int_equal(count(f->store, "i1"), 1);
    assert_int_equal(jn_store_checkpoint_get(f->store, "i1", &cursor), 0);
    assert_string_equal(cursor, "after");
    free(cursor);
}

static void test_transaction_errors(void **state)
{
    fixture_t *f = *state;

    open_ok(f);
    assert_int_equal(jn_store_commit(f->store), -1);
    assert_non_null(strstr(jn_store_errmsg(f->store), "commit: "));
    assert_non_null(strstr(jn_store_errmsg(f->store), "no transaction is active"));
    assert_int_equal(jn_store_begin(f->store), 0);
    assert_int_equal(jn_store_begin(f->store), -1);
    assert_non_null(strstr(jn_store_errmsg(f->store), "begin: "));
    assert_non_null(strstr(jn_store_errmsg(f->store), "within a transaction"));
    assert_int_equal(jn_store_rollback(f->store), 0);
}

static void test_survives_reopen(void **state)
{
    fixture_t *f = *state;
    jn_job_record_t in = job("job-1", JN_JOB_SUCCEEDED), out;
    char *cursor = NULL, *strings = NULL;

    open_ok(f);
    put_evidence(f->store, "e1", "i1", 1);
    assert_int_equal(jn_store_checkpoint_set(f->store, "i1", "c1"), 0);
    assert_int_equal(jn_store_job_put(f->store, &in), 0);
    reopen(f);
    put_evidence(f->store, "e1", "i1", 0);
    assert_int_equal(count(f->store, NULL), 1);
    assert_int_equal(jn_store_checkpoint_get(f->store, "i1", &cursor), 0);
    assert_string_equal(cursor, "c1");
    free(cursor);
    assert_int_equal(jn_store_job_get(f->store, "job-1", &out, &strings), 0);
    assert_int_equal(out.status, JN_JOB_SUCCEEDED);
    free(strings);
}

static void test_close_null(void **state)
{
    (void)state;
    jn_store_close(NULL);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_migrations_on_fresh_file),
        T(test_reopen_is_noop),
        T(test_newer_schema_refused),
        T(test_failing_migration_rolls_back),
        T(test_queue_group_index_partial),
        T(test_queue_stats_without_state_index),
        T(test_integration_jobs_in_index_order),
        T(test_queue_state_check_rebuilt),
        T(test_not_a_database),
        T(test_open_missing_directory),
        T(test_wal_mode),
        T(test_checkpoint_missing),
        T(test_checkpoint_set_get_overwrite),
        T(test_checkpoint_null_arguments),
        T(test_evidence_idempotent),
        T(test_evidence_put_requires_data),
        T(test_evidence_count),
        T(test_evidence_each_order_and_stop),
        T(test_evidence_fields_round_trip),
        T(test_evidence_each_not_reentrant),
        T(test_job_put_get),
        T(test_job_replace),
        T(test_job_missing),
        T(test_job_invalid_status),
        cmocka_unit_test(test_job_status_names),
        T(test_rollback_discards_together),
        T(test_transaction_errors),
        T(test_survives_reopen),
        cmocka_unit_test(test_close_null),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
