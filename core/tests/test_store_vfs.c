/* The store's VFS (core/src/store_vfs.c): a transaction's writes to the
 * write-ahead log reach the file in one call, and nothing else changes:
 * what a commit wrote is there after a crash, other connections see it, a
 * transaction larger than the buffer and one that spills before its commit
 * are whole, and a write that fails fails the commit and keeps the file
 * sound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../src/store_vfs.h"
#include "test_tmpdir.h"

typedef struct {
    char dir[256];
    char path[300];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    tt_tmpdir(f->dir, sizeof(f->dir), "store-vfs");
    snprintf(f->path, sizeof(f->path), "%s/v.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    tt_rmtree(f->dir);
    free(f);
    return 0;
}

static sqlite3 *open_db(const char *path, const char *vfs)
{
    sqlite3 *db = NULL;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
                     SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                                  " PRAGMA wal_autocheckpoint = 0;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    return db;
}

static int exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static long long one_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    long long v;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void integrity_ok(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* write system calls of this process so far (the kernel's count) */
static long long write_calls(void)
{
    FILE *fp = fopen("/proc/self/io", "r");
    char line[128];
    long long v = -1;

    assert_non_null(fp);
    while (fgets(line, sizeof(line), fp) != NULL)
        if (sscanf(line, "syscw: %lld", &v) == 1)
            break;
    fclose(fp);
    return v;
}

/* 50 commits of 20 rows of 600 bytes and an index: each dirties about a
 * dozen pages, which the default VFS writes with two calls each. */
static long long commit_writes(const char *path, const char *vfs)
{
    sqlite3 *db = open_db(path, vfs);
    long long before;

    assert_int_equal(exec(db, "CREATE TABLE t(k TEXT UNIQUE, v BLOB)"), SQLITE_OK);
    before = write_calls();
    for (int i = 0; i < 50; i++) {
        assert_int_equal(exec(db, "BEGIN"), SQLITE_OK);
        for (int j = 0; j < 20; j++)
            assert_int_equal(exec(db, "INSERT INTO t VALUES(hex(randomblob(16)), randomblob(600))"),
                             SQLITE_OK);
        assert_int_equal(exec(db, "COMMIT"), SQLITE_OK);
    }
    before = write_calls() - before;
    assert_int_equal(one_int(db, "SELECT count(*) FROM t"), 1000);
    sqlite3_close(db);
    return before;
}

static void test_commit_is_one_write(void **state)
{
    fixture_t *f = *state;
    char plain[320];
    long long ours, theirs;

    assert_non_null(jn_store_vfs());
    assert_string_equal(jn_store_vfs(), JN_STORE_VFS);
    snprintf(plain, sizeof(plain), "%s/plain.db", f->dir);
    theirs = commit_writes(plain, NULL);
    ours = commit_writes(f->path, jn_store_vfs());
    /* one write per commit (the log's header rides with the first), where
     * the default VFS makes well over ten */
    if (ours > 60 || theirs < 10 * ours)
        fail_msg("write calls for 50 commits: %lld through the store's VFS, %lld without", ours,
                 theirs);
    integrity_ok(f->path);
}

/* Runs fn(path) in a child process, which exits with its result: the
 * child dies without closing what it opened (a crash, as far as the file
 * knows). Fails unless the child exits with 0. */
static void in_child(const char *path, int (*fn)(const char *))
{
    pid_t pid = fork();
    int status;

    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fn(path));
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("the child exited with %d (signal %d)",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* open_db without cmocka's asserts (for a child) */
static sqlite3 *child_open(const char *path)
{
    sqlite3 *db = NULL;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, jn_store_vfs()) !=
            SQLITE_OK ||
        exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;") != SQLITE_OK)
        _exit(9);
    return db;
}

static int commit_then_crash(const char *path)
{
    sqlite3 *db = child_open(path);

    if (exec(db, "CREATE TABLE t(v BLOB)") != SQLITE_OK)
        return 2;
    for (int i = 0; i < 30; i++)
        if (exec(db, "INSERT INTO t VALUES(randomblob(3000))") != SQLITE_OK)
            return 3;
    /* a transaction left open: its spilled frames must not count */
    exec(db, "BEGIN; INSERT INTO t VALUES(randomblob(100000));");
    return 0;
}

/* A child commits, then dies without closing: every commit is in the file. */
static void test_commits_survive_a_crash(void **state)
{
    fixture_t *f = *state;
    sqlite3 *db;

    in_child(f->path, commit_then_crash);
    db = open_db(f->path, jn_store_vfs());
    assert_int_equal(one_int(db, "SELECT count(*) FROM t"), 30);
    sqlite3_close(db);
    integrity_ok(f->path);
}

/* Transactions larger than the buffer, pages spilled before the commit, a
 * savepoint rolled back, and a second connection reading and writing in
 * between: all whole. */
static void test_large_and_spilled_transactions(void **state)
{
    fixture_t *f = *state;
    sqlite3 *a = open_db(f->path, jn_store_vfs()), *b;

    assert_int_equal(exec(a, "PRAGMA cache_size = 8; CREATE TABLE t(k, v BLOB);"
                             " CREATE INDEX t_v ON t(v);"),
                     SQLITE_OK);
    b = open_db(f->path, jn_store_vfs());
    for (int r = 0; r < 6; r++) {
        assert_int_equal(exec(a, "BEGIN"), SQLITE_OK);
        for (int i = 0; i < 150; i++)
            assert_int_equal(exec(a, "INSERT INTO t VALUES(1, randomblob(700))"), SQLITE_OK);
        assert_int_equal(exec(a, "INSERT INTO t VALUES(2, randomblob(400000))"), SQLITE_OK);
        assert_int_equal(exec(a, "SAVEPOINT s"), SQLITE_OK);
        for (int i = 0; i < 40; i++)
            assert_int_equal(exec(a, "INSERT INTO t VALUES(3, randomblob(700))"), SQLITE_OK);
        assert_int_equal(exec(a, "ROLLBACK TO s; RELEASE s; COMMIT;"), SQLITE_OK);
        assert_int_equal(one_int(b, "SELECT count(*) FROM t"), 151 * (r + 1) + r);
        assert_int_equal(exec(b, "INSERT INTO t VALUES(4, randomblob(50))"), SQLITE_OK);
    }
    assert_int_equal(one_int(a, "SELECT count(*) FROM t WHERE k = 3"), 0);
    assert_int_equal(exec(a, "PRAGMA wal_checkpoint(TRUNCATE)"), SQLITE_OK);
    sqlite3_close(b);
    sqlite3_close(a);
    integrity_ok(f->path);
}

/* Commits until the file refuses a write (past the process's file-size
 * limit): 0 when that commit failed with a full disk or an I/O error. */
static int commit_until_refused_sync(const char *path, const char *synchronous)
{
    struct rlimit rl = {4 * 1024 * 1024, 4 * 1024 * 1024};
    sqlite3 *db = child_open(path);
    int rc = exec(db, synchronous);

    signal(SIGXFSZ, SIG_IGN);
    if (exec(db, "CREATE TABLE t(v BLOB); INSERT INTO t VALUES(randomblob(1000));") != SQLITE_OK)
        return 2;
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
        return 3;
    for (int i = 0; i < 400 && rc == SQLITE_OK; i++)
        rc = exec(db, "BEGIN; INSERT INTO t VALUES(randomblob(60000)); COMMIT;");
    if (rc == SQLITE_OK)
        return 4;
    sqlite3_close_v2(db);
    return (rc & 0xff) == SQLITE_FULL || (rc & 0xff) == SQLITE_IOERR ? 0 : 5;
}

static int commit_until_refused(const char *path)
{
    return commit_until_refused_sync(path, "PRAGMA synchronous = FULL");
}

/* The same without a sync at commit (a caller that syncs the log itself):
 * the commit frame's write is what fails the commit. */
static int commit_until_refused_unsynced(const char *path)
{
    return commit_until_refused_sync(path, "PRAGMA synchronous = NORMAL");
}

/* A write the file refuses fails the commit with an error, and the file
 * keeps what was committed before. */
static void test_failed_write_fails_the_commit(void **state)
{
    fixture_t *f = *state;
    sqlite3 *db;

    in_child(f->path, commit_until_refused);
    db = open_db(f->path, jn_store_vfs());
    assert_true(one_int(db, "SELECT count(*) FROM t") >= 1);
    assert_int_equal(exec(db, "INSERT INTO t VALUES(randomblob(10))"), SQLITE_OK);
    sqlite3_close(db);
    integrity_ok(f->path);
}

static void test_failed_write_fails_an_unsynced_commit(void **state)
{
    fixture_t *f = *state;
    sqlite3 *db;

    in_child(f->path, commit_until_refused_unsynced);
    db = open_db(f->path, jn_store_vfs());
    assert_true(one_int(db, "SELECT count(*) FROM t") >= 1);
    assert_int_equal(exec(db, "INSERT INTO t VALUES(randomblob(10))"), SQLITE_OK);
    sqlite3_close(db);
    integrity_ok(f->path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commit_is_one_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commits_survive_a_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_and_spilled_transactions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_fails_the_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_fails_an_unsynced_commit, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
