/* The embedded job queue against a real SQLite store, with a driven clock:
 * the queue contract (queue_contract.inc.c) and what is the store's own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "junction/queue.h"
#include "junction/store.h"

#include "queue_contract.inc.c"
#include "test_tmpdir.h"

/* Queues opened beside the fixture's, each on its own store connection. */
#define MAX_EXTRA 4

typedef struct {
    qc_fixture_t qc; /* first: the contract tests see only this */
    char dir[256];
    char path[300];
    jn_store_t *store;
    struct {
        jn_queue_t *q;
        jn_store_t *store;
    } extra[MAX_EXTRA];
} fixture_t;

static jn_store_t *open_store(fixture_t *f)
{
    char err[512] = "";
    jn_store_t *s = jn_store_open_sqlite(f->path, err, sizeof(err));

    if (s == NULL)
        fail_msg("open: %s", err);
    return s;
}

static jn_queue_t *open_queue(fixture_t *f, jn_store_t *s, const char *consumer)
{
    jn_queue_opts_t o = {0};
    char err[512] = "";
    jn_queue_t *q;

    o.consumer = consumer;
    o.visibility_timeout_ms = VISIBILITY;
    o.max_attempts = 3;
    o.retry_base_ms = 30 * SEC;
    o.retry_max_ms = 100 * SEC;
    o.now_ms = qc_clock;
    o.clock_ud = &f->qc;
    q = jn_queue_open_store(s, &o, err, sizeof(err));
    if (q == NULL)
        fail_msg("queue: %s", err);
    return q;
}

/* Another process's view: a queue on a connection of its own to the file. */
static jn_queue_t *sqlite_open(qc_fixture_t *qc, const char *consumer)
{
    fixture_t *f = (fixture_t *)qc;
    size_t i;

    for (i = 0; i < MAX_EXTRA; i++) {
        if (f->extra[i].q == NULL) {
            f->extra[i].store = open_store(f);
            f->extra[i].q = open_queue(f, f->extra[i].store, consumer);
            return f->extra[i].q;
        }
    }
    fail_msg("sqlite: more than %d extra queues", MAX_EXTRA);
    return NULL;
}

static void sqlite_close(qc_fixture_t *qc, jn_queue_t *q)
{
    fixture_t *f = (fixture_t *)qc;
    size_t i;

    for (i = 0; i < MAX_EXTRA; i++) {
        if (f->extra[i].q == q) {
            jn_queue_destroy(q);
            jn_store_close(f->extra[i].store);
            f->extra[i].q = NULL;
            f->extra[i].store = NULL;
            return;
        }
    }
    fail_msg("sqlite: closing a queue it did not open");
}

/* The contract is all there is to check: the store keeps no other state. */
static const qc_backend_t sqlite_backend = {"sqlite", sqlite_open, sqlite_close, NULL};

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    tt_tmpdir(f->dir, sizeof(f->dir), "jn-queue");
    snprintf(f->path, sizeof(f->path), "%s/junction.db", f->dir);
    f->qc.backend = &sqlite_backend;
    f->qc.now = T0;
    f->store = open_store(f);
    f->qc.q = open_queue(f, f->store, "worker-1");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    size_t i;

    /* a failed test leaves its extra queues open */
    for (i = 0; i < MAX_EXTRA; i++)
        if (f->extra[i].q != NULL)
            sqlite_close(&f->qc, f->extra[i].q);
    jn_queue_destroy(f->qc.q);
    jn_store_close(f->store);
    tt_rmtree(f->dir);
    free(f);
    return 0;
}

/* A worker that dies leaves its job to the next claim after the lease. */
static void test_lease_expiry_reclaim(void **state)
{
    fixture_t *f = *state;
    jn_store_t *s2 = open_store(f);
    jn_queue_t *q2 = open_queue(f, s2, "worker-2");
    jn_queue_job_t first, again;
    char id[JN_QUEUE_ID_LEN];

    enqueue(f->qc.q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, id);
    assert_int_equal(claim(f->qc.q, &first), 0);
    f->qc.now += VISIBILITY - 1;
    assert_int_equal(claim(q2, &again), 1);
    f->qc.now += 2;
    assert_int_equal(claim(q2, &again), 0);
    assert_string_equal(again.id, id);
    assert_int_equal(again.attempts, 2);
    assert_string_equal(again.consumer, "worker-2");
    /* the first worker comes back: its lease is gone, its ack does nothing */
    assert_int_equal(jn_queue_ack(f->qc.q, &first), 1);
    assert_int_equal(jn_queue_ack(q2, &again), 0);
    jn_queue_job_clear(&first);
    jn_queue_job_clear(&again);
    jn_queue_destroy(q2);
    jn_store_close(s2);
}

static void test_heartbeat_keeps_the_lease(void **state)
{
    fixture_t *f = *state;
    jn_store_t *s2 = open_store(f);
    jn_queue_t *q2 = open_queue(f, s2, "worker-2");
    jn_queue_job_t job, other;

    enqueue(f->qc.q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, NULL);
    assert_int_equal(claim(f->qc.q, &job), 0);
    f->qc.now += VISIBILITY * 9 / 10;
    assert_int_equal(jn_queue_heartbeat(f->qc.q), 0);
    f->qc.now += VISIBILITY * 9 / 10;
    assert_int_equal(claim(q2, &other), 1);
    assert_int_equal(jn_queue_heartbeat(q2), 0); /* holds nothing: no effect */
    f->qc.now += VISIBILITY;
    assert_int_equal(claim(q2, &other), 0);
    jn_queue_job_clear(&job);
    jn_queue_job_clear(&other);
    jn_queue_destroy(q2);
    jn_store_close(s2);
}

/* Jobs survive closing and reopening the store; a lease held by the old
 * process is taken over when it expires. */
static void test_survives_restart(void **state)
{
    fixture_t *f = *state;
    char ids[4][JN_QUEUE_ID_LEN];
    jn_queue_job_t job;
    int i, seen = 0;

    for (i = 0; i < 4; i++) {
        enqueue(f->qc.q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, ids[i]);
        f->qc.now += SEC;
    }
    assert_int_equal(claim(f->qc.q, &job), 0);
    assert_string_equal(job.id, ids[0]);
    jn_queue_job_clear(&job);
    /* the process dies: no ack */
    jn_queue_destroy(f->qc.q);
    jn_store_close(f->store);
    f->store = open_store(f);
    f->qc.q = open_queue(f, f->store, "worker-after-restart");
    for (i = 1; i < 4; i++) {
        assert_int_equal(claim(f->qc.q, &job), 0);
        assert_string_equal(job.id, ids[i]);
        assert_int_equal(jn_queue_ack(f->qc.q, &job), 0);
        jn_queue_job_clear(&job);
        seen++;
    }
    assert_int_equal(claim(f->qc.q, &job), 1);
    f->qc.now += VISIBILITY;
    assert_int_equal(claim(f->qc.q, &job), 0);
    assert_string_equal(job.id, ids[0]);
    assert_int_equal(job.attempts, 2);
    jn_queue_job_clear(&job);
    assert_int_equal(seen, 3);
}

static void test_backoff_curve(void **state)
{
    fixture_t *f = *state;
    int64_t d;
    int attempt;

    for (attempt = 1; attempt <= 12; attempt++) {
        int64_t base = 30 * SEC << (attempt - 1 > 4 ? 4 : attempt - 1);
        if (base > 100 * SEC)
            base = 100 * SEC;
        d = jn_queue_backoff_ms(f->qc.q, "job-x", attempt);
        assert_true(d >= base && d <= base + base / 10);
        assert_int_equal(d, jn_queue_backoff_ms(f->qc.q, "job-x", attempt));
    }
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        QC_CONTRACT_TESTS(T),     T(test_lease_expiry_reclaim), T(test_heartbeat_keeps_the_lease),
        T(test_survives_restart), T(test_backoff_curve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
