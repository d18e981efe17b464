/* The hash-chained audit log: append, verify, and detection of each kind of
 * tampering (edit, deletion, reordering, rewrite, truncation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "junction/audit.h"
#include "junction/crypto.h"
#include "junction/redact.h"
#include "junction/store.h"

#include "test_store_tmp.h"

typedef struct {
    char dir[256];
    char path[300];
    jn_store_t *store;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->store = tt_store_open(f->dir, sizeof(f->dir), f->path, sizeof(f->path), "jn-audit");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    tt_store_close(f->store, f->dir);
    free(f);
    return 0;
}

/* Runs SQL on the file directly, as an attacker with the database would. The
 * append-only triggers are dropped first: they stop mistakes, not attackers. */
static void tamper(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_exec(db,
                     "DROP TRIGGER IF EXISTS audit_log_no_update;"
                     "DROP TRIGGER IF EXISTS audit_log_no_delete;",
                     NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

static void append_n(jn_store_t *s, int n)
{
    char detail[64], err[256] = "";
    int64_t seq = 0;
    int i;

    for (i = 0; i < n; i++) {
        snprintf(detail, sizeof(detail), "{\"n\":%d}", i + 1);
        jn_audit_event_t ev = {.actor = "alice",
                               .action = "credential.access",
                               .org_id = "org-1",
                               .credential_id = i % 2 ? "cred-b" : NULL,
                               .detail_json = detail,
                               .ts_ms = 1700000000000 + i};
        if (jn_audit_append(s, &ev, &seq, err, sizeof(err)) != 0)
            fail_msg("append: %s", err);
    }
}

static int verify(jn_store_t *s, const char *anchor, int64_t *bad, char *report, size_t len)
{
    int rc = jn_audit_verify(s, anchor, bad, report, len);

    print_message("verify: %s\n", report);
    return rc;
}

static void test_append_and_verify(void **state)
{
    fixture_t *f = *state;
    char report[512], anchor[JN_AUDIT_ANCHOR_MAX], err[256];
    int64_t bad = -1, seq = 0;

    /* Empty log: intact, anchor is the genesis. */
    assert_int_equal(verify(f->store, NULL, &bad, report, sizeof(report)), 0);
    assert_int_equal(jn_audit_anchor(f->store, anchor, err, sizeof(err)), 0);
    assert_string_equal(anchor,
                        "0:0000000000000000000000000000000000000000000000000000000000000000");
    assert_int_equal(verify(f->store, anchor, &bad, report, sizeof(report)), 0);

    append_n(f->store, 5);
    assert_int_equal(verify(f->store, NULL, &bad, report, sizeof(report)), 0);
    assert_int_equal(bad, 0);
    assert_non_null(strstr(report, "intact: 5 entries"));
    assert_int_equal(jn_audit_anchor(f->store, anchor, err, sizeof(err)), 0);
    assert_int_equal(strncmp(anchor, "5:", 2), 0);
    assert_int_equal(verify(f->store, anchor, &bad, report, sizeof(report)), 0);
    assert_non_null(strstr(report, "anchor matched"));
    /* A bare hash anchor works as well. */
    assert_int_equal(verify(f->store, anchor + 2, &bad, report, sizeof(report)), 0);

    /* Required fields. */
    jn_audit_event_t bad_ev = {.actor = "", .action = "x"};
    assert_int_equal(jn_audit_append(f->store, &bad_ev, &seq, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "actor"));
    bad_ev.actor = "a";
    bad_ev.action = NULL;
    assert_int_equal(jn_audit_append(f->store, &bad_ev, &seq, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "action"));
}

/* The documented canonical encoding, recomputed by hand. */
static void test_canonical_encoding(void **state)
{
    fixture_t *f = *state;
    const char *canon = "junction:audit:v1\n"
                        "1:1\n"
                        "13:1700000000000\n"
                        "5:alice\n"
                        "17:credential.access\n"
                        "5:org-1\n"
                        "-\n"
                        "7:{\"n\":1}\n"
                        "64:0000000000000000000000000000000000000000000000000000000000000000\n";
    uint8_t md[JN_SHA256_LEN];
    char want[65], got[65];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    append_n(f->store, 1);
    assert_int_equal(jn_sha256(canon, strlen(canon), md), 0);
    jn_hex_encode(md, sizeof(md), want);
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT hash FROM audit_log WHERE seq = 1", -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    snprintf(got, sizeof(got), "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    assert_string_equal(got, want);
}

static void test_edit_detected(void **state)
{
    fixture_t *f = *state;
    char report[512];
    int64_t bad = 0;

    append_n(f->store, 6);
    tamper(f->path, "UPDATE audit_log SET detail_json = '{\"n\":99}' WHERE seq = 3");
    assert_int_equal(verify(f->store, NULL, &bad, report, sizeof(report)), 1);
    assert_int_equal(bad, 3);
    assert_non_null(strstr(report, "entry 3 was altered"));
}

static void test_edit_of_actor_detected(void **state)
{
    fixture_t *f = *state;
    char report[512];
    int64_t bad = 0;

    append_n(f->store, 4);
    tamper(f->path, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 4");
    assert_int_equal(verify(f->store, NULL, &bad, report, sizeof(report)), 1);
    assert_int_equal(bad, 4);
}

static void test_delete_detected(void **state)
{
    fixture_t *f = *state;
    char report[512];
    int64_t bad = 0;

    append_n(f->store, 6);
    tamper(f->path, "DELETE FROM audit_log WHERE seq = 3");
    assert_int_equal(verify(f->store, NULL, &bad, report, sizeof(report)), 1);
    assert_int_equal(bad, 3);
    assert_non_null(strstr(report, "entry 3 is missing (deleted)"));
}

static void test_delete_first_detected(void **state)
{
    fixture_t *f = *state;
    char report[512];
    int64_t bad = 0;

    append_n(f->store, 3);
    tamper(f->path, "DELETE FROM audit_log WHERE seq = 1");
    assert_int_equal(verify(f->store, NULL, &bad, report, sizeof(report)), 1);
    assert_int_equal(bad, 1);
    assert_non_null(strstr(report, "starts at entry 2"));
}

/* Deleting an entry and renumbering the rest closes the gap but breaks the chain. */
static void test_delete_and_renumber_detected(void **state)
{
    fixture_t *f = *state;
    char report[512];
    int64_t bad = 0;

    append_n(f->store, 6);
    tamper(f->path, "DELETE FROM audit_log WHERE seq = 3;"
                    "UPDATE audit_log SET seq = seq - 1 WHERE seq > 3;");
    assert_int_equal(verify(f->store, NULL, &bad, report, sizeof(report)), 1);
    assert_int_equal(bad, 3);
    assert_non_null(strstr(report, "does not link to entry 2"));
}

static void test_reorder_detected(void **state)
{
    fixture_t *f = *state;
    char report[512];
    int64_t bad = 0;

    append_n(f->store, 6);
    /* Swap rows 3 and 4 whole (seq is the key, everything else moves). */
    tamper(f->path, "UPDATE audit_log SET seq = -3 WHERE seq = 3;"
                    "UPDATE audit_log SET seq = 3 WHERE seq = 4;"
                    "UPDATE audit_log SET seq = 4 WHERE seq = -3;");
    assert_int_equal(verify(f->store, NULL, &bad, report, sizeof(report)), 1);
    assert_int_equal(bad, 3);
    assert_non_null(strstr(report, "entry 3 is out of order"));
    assert_non_null(strstr(report, "entry 4 does"));
}

static void test_reorder_far_detected(void **state)
{
    fixture_t *f = *state;
    char report[512];
    int64_t bad = 0;

    append_n(f->store, 8);
    tamper(f->path, "UPDATE audit_log SET seq = -2 WHERE seq = 2;"
                    "UPDATE audit_log SET seq = 2 WHERE seq = 6;"
                    "UPDATE audit_log SET seq = 6 WHERE seq = -2;");
    assert_int_equal(verify(f->store, NULL, &bad, report, sizeof(report)), 1);
    assert_int_equal(bad, 2);
    assert_non_null(strstr(report, "entry 6 does"));
}

/* Recomputes the hash of entry `seq` as an attacker who knows the format would. */
static void rehash(fixture_t *f, int64_t seq)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    jn_audit_record_t r = {0};
    char hash[65], sql[256];
    char *strs[6] = {0};
    int i;

    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    snprintf(sql, sizeof(sql),
             "SELECT ts, actor, action, org_id, credential_id, detail_json, prev_hash"
             " FROM audit_log WHERE seq = %" PRId64,
             seq);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    for (i = 0; i < 6; i++) {
        const char *t = (const char *)sqlite3_column_text(st, i + 1);
        strs[i] = t ? strdup(t) : NULL;
    }
    r.seq = seq;
    r.ts_ms = sqlite3_column_int64(st, 0);
    r.actor = strs[0];
    r.action = strs[1];
    r.org_id = strs[2];
    r.credential_id = strs[3];
    r.detail_json = strs[4];
    r.prev_hash = strs[5];
    sqlite3_finalize(st);
    sqlite3_close(db);
    assert_int_equal(jn_audit_hash(&r, hash), 0);
    for (i = 0; i < 6; i++)
        free(strs[i]);
    snprintf(sql, sizeof(sql), "UPDATE audit_log SET hash = '%s' WHERE seq = %" PRId64, hash, seq);
    tamper(f->path, sql);
}

static void test_edit_with_rehash(void **state)
{
    fixture_t *f = *state;
    char report[512], anchor[JN_AUDIT_ANCHOR_MAX], err[256], sql[256];
    int64_t bad = 0, i;

    append_n(f->store, 6);
    assert_int_equal(jn_audit_anchor(f->store, anchor, err, sizeof(err)), 0);

    /* Editing entry 4 and fixing its own hash breaks the link of entry 5. */
    tamper(f->path, "UPDATE audit_log SET detail_json = '{\"n\":0}' WHERE seq = 4");
    rehash(f, 4);
    assert_int_equal(verify(f->store, NULL, &bad, report, sizeof(report)), 1);
    assert_int_equal(bad, 5);
    assert_non_null(strstr(report, "entry 5 does not link to entry 4"));

    /* Rewriting the rest of the chain too passes alone, but not against the anchor. */
    for (i = 5; i <= 6; i++) {
        snprintf(sql, sizeof(sql),
                 "UPDATE audit_log SET prev_hash = (SELECT hash FROM audit_log WHERE seq = %" PRId64
                 ") WHERE seq = %" PRId64,
                 i - 1, i);
        tamper(f->path, sql);
        rehash(f, i);
    }
    assert_int_equal(verify(f->store, NULL, &bad, report, sizeof(report)), 0);
    assert_int_equal(verify(f->store, anchor, &bad, report, sizeof(report)), 1);
    assert_int_equal(bad, 6);
    assert_non_null(strstr(report, "differs from the anchor"));
}

static void test_truncation_against_anchor(void **state)
{
    fixture_t *f = *state;
    char report[512], anchor[JN_AUDIT_ANCHOR_MAX], err[256];
    int64_t bad = 0;

    append_n(f->store, 7);
    assert_int_equal(jn_audit_anchor(f->store, anchor, err, sizeof(err)), 0);
    tamper(f->path, "DELETE FROM audit_log WHERE seq >= 6");
    /* Without the anchor a cut tail cannot be seen; with it, it is. */
    assert_int_equal(verify(f->store, NULL, &bad, report, sizeof(report)), 0);
    assert_int_equal(verify(f->store, anchor, &bad, report, sizeof(report)), 1);
    assert_int_equal(bad, 6);
    assert_non_null(strstr(report, "entries 6 to 7 are missing (truncated)"));
    /* A bare-hash anchor: the hash is no longer in the log. */
    assert_int_equal(verify(f->store, strchr(anchor, ':') + 1, &bad, report, sizeof(report)), 1);
    assert_int_equal(bad, 6);
    assert_non_null(strstr(report, "not in the log"));
}

static void test_bad_anchor(void **state)
{
    fixture_t *f = *state;
    char report[512];
    int64_t bad = 0;

    append_n(f->store, 1);
    assert_int_equal(verify(f->store, "5:xyz", &bad, report, sizeof(report)), -1);
    assert_non_null(strstr(report, "anchor"));
    assert_int_equal(verify(f->store, "abc", &bad, report, sizeof(report)), -1);
}

/* An entry written inside the caller's transaction rolls back with it. */
static void test_append_joins_transaction(void **state)
{
    fixture_t *f = *state;
    char report[512], err[256];
    int64_t bad = 0, seq = 0;
    jn_audit_event_t ev = {.actor = "alice", .action = "credential.create"};

    append_n(f->store, 2);
    assert_int_equal(jn_store_begin(f->store), 0);
    assert_int_equal(jn_store_in_transaction(f->store), 1);
    assert_int_equal(jn_audit_append(f->store, &ev, &seq, err, sizeof(err)), 0);
    assert_int_equal(seq, 3);
    assert_int_equal(jn_store_rollback(f->store), 0);
    assert_int_equal(jn_store_in_transaction(f->store), 0);
    assert_int_equal(jn_audit_append(f->store, &ev, &seq, err, sizeof(err)), 0);
    assert_int_equal(seq, 3);
    assert_int_equal(verify(f->store, NULL, &bad, report, sizeof(report)), 0);
}

/* Two connections (as two processes) appending in turn keep one chain. */
static void test_two_writers(void **state)
{
    fixture_t *f = *state;
    char report[512], err[512];
    int64_t bad = 0;
    jn_store_t *other = jn_store_open_sqlite(f->path, err, sizeof(err));
    int i;

    assert_non_null(other);
    for (i = 0; i < 10; i++)
        append_n(i % 2 ? other : f->store, 1);
    assert_int_equal(verify(other, NULL, &bad, report, sizeof(report)), 0);
    assert_non_null(strstr(report, "10 entries"));
    jn_store_close(other);
}

/* The log cannot be edited through SQL while the triggers stand. */
static void test_append_only_triggers(void **state)
{
    fixture_t *f = *state;
    sqlite3 *db = NULL;
    char *msg = NULL;

    append_n(f->store, 2);
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_not_equal(
        sqlite3_exec(db, "UPDATE audit_log SET actor = 'x' WHERE seq = 1", NULL, NULL, &msg),
        SQLITE_OK);
    assert_non_null(strstr(msg, "append-only"));
    sqlite3_free(msg);
    msg = NULL;
    assert_int_not_equal(sqlite3_exec(db, "DELETE FROM audit_log", NULL, NULL, &msg), SQLITE_OK);
    sqlite3_free(msg);
    sqlite3_close(db);
}

/* A registered secret that slips into a detail is stored redacted. */
static void test_detail_redacted(void **state)
{
    fixture_t *f = *state;
    const char *canary = "CANARY-audit-7f3a9c";
    char detail[128], report[512], err[256];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t bad = 0;

    assert_int_equal(jn_redactor_add_secret(jn_redactor_global(), canary, strlen(canary)), 0);
    snprintf(detail, sizeof(detail), "{\"error\":\"upstream said %s\"}", canary);
    jn_audit_event_t ev = {.actor = "tester", .action = "connection.test", .detail_json = detail};
    assert_int_equal(jn_audit_append(f->store, &ev, NULL, err, sizeof(err)), 0);
    jn_redactor_remove_secret(jn_redactor_global(), canary, strlen(canary));

    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT detail_json FROM audit_log WHERE seq = 1", -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_null(strstr((const char *)sqlite3_column_text(st, 0), canary));
    assert_non_null(strstr((const char *)sqlite3_column_text(st, 0), JN_REDACTED));
    sqlite3_finalize(st);
    sqlite3_close(db);
    assert_int_equal(verify(f->store, NULL, &bad, report, sizeof(report)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_and_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_canonical_encoding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edit_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edit_of_actor_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_first_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_and_renumber_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reorder_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reorder_far_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edit_with_rehash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncation_against_anchor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_anchor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_joins_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_only_triggers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detail_redacted, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
