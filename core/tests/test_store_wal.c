/* The write-ahead log of a connection whose checkpoints run in the
 * background (jn_store_sqlite_background_checkpoints): what it commits reaches
 * the database file without the writer checkpointing, the log stays bounded
 * however long the writer goes on, and nothing committed is lost. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "junction/store.h"

#include "test_store_tmp.h"

/* What the store uses (core/src/store_sqlite.c): the thread is woken every
 * 125 frames; the writer checkpoints itself past CKPT_CAP. */
#define CKPT_CAP 8192
#define PAGE 4096
#define FRAME (PAGE + 24)

typedef struct {
    char dir[256];
    char path[300];
    char wal[320];
    jn_store_t *store;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->store = tt_store_open(f->dir, sizeof(f->dir), f->path, sizeof(f->path), "jn-wal");
    snprintf(f->wal, sizeof(f->wal), "%s-wal", f->path);
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

static long long file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* One transaction of `rows` cursors of `len` bytes, keyed batch:row. */
static void write_batch(jn_store_t *s, int batch, int rows, size_t len)
{
    char id[64], *cursor = malloc(len + 1);

    assert_non_null(cursor);
    memset(cursor, 'a' + batch % 26, len);
    cursor[len] = '\0';
    assert_int_equal(jn_store_begin(s), 0);
    for (int r = 0; r < rows; r++) {
        snprintf(id, sizeof(id), "int-%06d-%03d", batch, r);
        if (jn_store_checkpoint_set(s, id, cursor) != 0)
            fail_msg("checkpoint_set: %s", jn_store_errmsg(s));
    }
    assert_int_equal(jn_store_commit(s), 0);
    free(cursor);
}

static void check_batch(jn_store_t *s, int batch, int rows, size_t len)
{
    char id[64], *cursor = NULL;

    for (int r = 0; r<rows; r += rows> 1 ? rows - 1 : 1) {
        snprintf(id, sizeof(id), "int-%06d-%03d", batch, r);
        assert_int_equal(jn_store_checkpoint_get(s, id, &cursor), 0);
        assert_non_null(cursor);
        assert_int_equal(strlen(cursor), len);
        assert_int_equal(cursor[0], 'a' + batch % 26);
        free(cursor);
        cursor = NULL;
    }
}

static void test_not_applicable(void **state)
{
    char err[512] = "";
    jn_store_t *mem = jn_store_open_sqlite(":memory:", err, sizeof(err));

    (void)state;
    assert_int_equal(jn_store_sqlite_background_checkpoints(NULL), 1);
    if (mem == NULL)
        fail_msg("open :memory: failed: %s", err);
    /* an in-memory database has no log to copy back */
    assert_int_equal(jn_store_sqlite_background_checkpoints(mem), 1);
    jn_store_close(mem);
}

/* The writer never checkpoints below CKPT_CAP frames, so the database file
 * grows only if the background thread copies the log back into it. */
static void test_log_reaches_the_database(void **state)
{
    fixture_t *f = *state;
    long long before;
    int waited = 0;

    assert_int_equal(jn_store_sqlite_background_checkpoints(f->store), 0);
    assert_int_equal(jn_store_sqlite_background_checkpoints(f->store), 1); /* already on */
    before = file_size(f->path);
    /* 400 transactions of 8 rows of 2 KiB: about 1,600 new pages, some
     * 2,400 frames (many wake-ups of the thread, one every 125 frames), far
     * below the writer's own threshold */
    for (int b = 0; b < 400; b++)
        write_batch(f->store, b, 8, 2048);
    assert_true(file_size(f->wal) > 0);
    assert_true(file_size(f->wal) < (long long)CKPT_CAP * FRAME);
    /* the copy runs on its own thread: wait (bounded) until it landed */
    while (file_size(f->path) < before + 512LL * PAGE && waited < 30000) {
        sleep_ms(10);
        waited += 10;
    }
    if (file_size(f->path) < before + 512LL * PAGE)
        fail_msg("the database file did not grow (%lld -> %lld bytes): no checkpoint ran", before,
                 file_size(f->path));
    for (int b = 0; b < 400; b++)
        check_batch(f->store, b, 8, 2048);
}

/* A writer that never pauses: the log stays within CKPT_CAP frames and a few
 * transactions (the thread's copies let it restart, or the writer
 * checkpoints itself at CKPT_CAP), and after a close and a reopen every
 * committed row is there. */
static void test_log_stays_bounded(void **state)
{
    fixture_t *f = *state;
    char err[512] = "";
    long long wal_max = 0, w;
    const int batches = 800, rows = 12;
    const long long bound = (long long)(CKPT_CAP + 1024) * FRAME + 32;

    assert_int_equal(jn_store_sqlite_background_checkpoints(f->store), 0);
    /* 12 rows of 3 KiB per transaction, a page each: over 10,000 frames in
     * all, which a log that never restarted would hold */
    for (int b = 0; b < batches; b++) {
        write_batch(f->store, b, rows, 3072);
        if ((w = file_size(f->wal)) > wal_max)
            wal_max = w;
    }
    if (wal_max > bound)
        fail_msg("the log grew to %lld bytes (bound %lld)", wal_max, bound);
    jn_store_close(f->store);
    f->store = jn_store_open_sqlite(f->path, err, sizeof(err));
    if (f->store == NULL)
        fail_msg("reopen failed: %s", err);
    for (int b = 0; b < batches; b++)
        check_batch(f->store, b, rows, 3072);
}

/* Closing the store while its checkpointer may be copying: it stops, joins,
 * and the file opens again with everything in it (ASan checks the rest). */
static void test_close_while_busy(void **state)
{
    fixture_t *f = *state;
    char err[512] = "";

    for (int round = 0; round < 3; round++) {
        assert_int_equal(jn_store_sqlite_background_checkpoints(f->store), 0);
        for (int b = 0; b < 30; b++)
            write_batch(f->store, round * 100 + b, 10, 2048);
        jn_store_close(f->store);
        f->store = jn_store_open_sqlite(f->path, err, sizeof(err));
        if (f->store == NULL)
            fail_msg("reopen failed: %s", err);
    }
    for (int round = 0; round < 3; round++)
        for (int b = 0; b < 30; b++)
            check_batch(f->store, round * 100 + b, 10, 2048);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_applicable),
        cmocka_unit_test_setup_teardown(test_log_reaches_the_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_stays_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_while_busy, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
