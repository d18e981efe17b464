/* Writer courtesy in the SQLite store (jn_store_sqlite_yield_to_writers):
 * a connection that writes transactions back to back, as the webhook intake
 * does under a steady stream, lets the other connections of the process
 * that wait for the write lock through, instead of winning every race for
 * it until their busy timeout fails them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "junction/store.h"
#include "test_store_tmp.h"

typedef struct {
    char dir[256];
    char path[300];
    jn_store_t *hog;   /* writes back to back, yielding */
    jn_store_t *other; /* a second connection of the process */
    atomic_int stop;
    /* the hog's thread */
    int transactions, failures;
    atomic_int saw_waiter;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    char err[512] = "";

    assert_non_null(f);
    f->hog = tt_store_open(f->dir, sizeof(f->dir), f->path, sizeof(f->path), "store-yield");
    f->other = jn_store_open_sqlite(f->path, err, sizeof(err));
    assert_non_null(f->other);
    assert_int_equal(jn_store_sqlite_yield_to_writers(f->hog), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    jn_store_close(f->other);
    tt_store_close(f->hog, f->dir);
    free(f);
    return 0;
}

/* One transaction after the other, each holding the write lock while it
 * writes a few rows and waits a little (the intake's gather), with only the
 * yield between them. */
static void *hog_main(void *arg)
{
    fixture_t *f = arg;
    struct timespec gather = {0, 300000};
    char key[32];

    while (!atomic_load(&f->stop)) {
        int ok = jn_store_begin(f->hog) == 0;
        for (int i = 0; ok && i < 20; i++) {
            snprintf(key, sizeof(key), "hog-%d", i);
            ok = jn_store_checkpoint_set(f->hog, key, "cursor") == 0;
        }
        nanosleep(&gather, NULL);
        ok = ok && jn_store_commit(f->hog) == 0;
        if (!ok) {
            f->failures++;
            jn_store_rollback(f->hog);
        }
        f->transactions++;
        if (jn_store_sqlite_writer_waiting())
            atomic_store(&f->saw_waiter, 1);
        jn_store_sqlite_yield(f->hog);
    }
    return NULL;
}

static void test_waiting_writer_gets_the_lock(void **state)
{
    fixture_t *f = *state;
    pthread_t hog;
    char key[32];
    char *cursor = NULL;
    int failed = 0;

    assert_int_equal(pthread_create(&hog, NULL, hog_main, f), 0);
    /* the hog holds the lock most of the time from here on */
    while (jn_store_checkpoint_get(f->other, "hog-0", &cursor) != 0 && !f->failures)
        ;
    free(cursor);
    cursor = NULL;
    /* at least 100 writes, and on until the hog has seen one of them wait
     * (on a loaded machine the hog may not run between a few of them, so
     * they need not wait: a bound of 10,000 writes keeps it finite) */
    for (int i = 0; i < 10000 && (i < 100 || !atomic_load(&f->saw_waiter)); i++) {
        snprintf(key, sizeof(key), "other-%d", i);
        /* each write waits for the lock (busy timeout: 5 s) and must get it */
        if (jn_store_checkpoint_set(f->other, key, "cursor") != 0) {
            print_error("write %d: %s\n", i, jn_store_errmsg(f->other));
            failed++;
        }
    }
    atomic_store(&f->stop, 1);
    pthread_join(hog, NULL);
    assert_int_equal(failed, 0);
    assert_int_equal(f->failures, 0);
    assert_true(f->transactions > 0);
    /* the hog saw the other connection waiting (its tries are marked) */
    assert_true(atomic_load(&f->saw_waiter));
    for (int i = 0; i < 100; i += 33) {
        snprintf(key, sizeof(key), "other-%d", i);
        assert_int_equal(jn_store_checkpoint_get(f->other, key, &cursor), 0);
        assert_string_equal(cursor, "cursor");
        free(cursor);
    }
}

static void *hog_write(void *arg)
{
    fixture_t *f = arg;

    f->failures = jn_store_checkpoint_set(f->hog, "k", "v") != 0;
    atomic_store(&f->stop, 1);
    return NULL;
}

/* A yielding connection's own waits do not count as another writer waiting
 * (two intakes would otherwise pause for each other). */
static void test_own_waits_do_not_count(void **state)
{
    fixture_t *f = *state;
    struct timespec ms = {0, 1000000};
    pthread_t t;
    int seen = 0;

    assert_int_equal(jn_store_begin(f->other), 0);
    assert_int_equal(jn_store_checkpoint_set(f->other, "held", "x"), 0);
    /* the hog's write waits for the lock the other connection holds */
    assert_int_equal(pthread_create(&t, NULL, hog_write, f), 0);
    for (int i = 0; i < 50 && !atomic_load(&f->stop); i++) {
        seen |= jn_store_sqlite_writer_waiting();
        nanosleep(&ms, NULL);
    }
    assert_int_equal(jn_store_commit(f->other), 0);
    pthread_join(t, NULL);
    assert_int_equal(f->failures, 0);
    assert_false(seen);
}

/* With nobody waiting, the yield leaves a gap every few transactions (for
 * waiters of other processes, which it cannot see), not after each one; a
 * store that does not yield never pauses. */
static void test_gaps_without_waiters(void **state)
{
    fixture_t *f = *state;
    int paused = 0;

    for (int i = 0; i < 64; i++) {
        assert_int_equal(jn_store_checkpoint_set(f->hog, "k", "v"), 0);
        paused += jn_store_sqlite_yield(f->hog);
    }
    assert_true(paused > 0);
    assert_true(paused < 64);
    for (int i = 0; i < 16; i++)
        assert_int_equal(jn_store_sqlite_yield(f->other), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_waiting_writer_gets_the_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_own_waits_do_not_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gaps_without_waiters, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
