/* The embedded job queue against a real SQLite store, with a driven clock. */
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

#include "test_tmpdir.h"

#define SEC 1000LL
#define T0 1773136800000LL
#define VISIBILITY (60 * SEC)

typedef struct {
    char dir[256];
    char path[300];
    jn_store_t *store;
    jn_queue_t *q;
    int64_t now;
} fixture_t;

static int64_t clock_fn(void *ud)
{
    return ((fixture_t *)ud)->now;
}

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
    o.now_ms = clock_fn;
    o.clock_ud = f;
    q = jn_queue_open_store(s, &o, err, sizeof(err));
    if (q == NULL)
        fail_msg("queue: %s", err);
    return q;
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    tt_tmpdir(f->dir, sizeof(f->dir), "jn-queue");
    snprintf(f->path, sizeof(f->path), "%s/junction.db", f->dir);
    f->now = T0;
    f->store = open_store(f);
    f->q = open_queue(f, f->store, "worker-1");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    jn_queue_destroy(f->q);
    jn_store_close(f->store);
    tt_rmtree(f->dir);
    free(f);
    return 0;
}

static void enqueue(jn_queue_t *q, const char *key, const char *org, jn_priority_t prio,
                    const char *payload, char id[JN_QUEUE_ID_LEN])
{
    jn_queue_enqueue_t e = {0};
    jn_queue_enqueued_t out;

    e.idempotency_key = key;
    e.provider = "github";
    e.organization_id = org;
    e.priority = prio;
    e.payload_json = payload ? payload : "{}";
    if (jn_queue_enqueue(q, &e, &out) != 0)
        fail_msg("enqueue: %s", jn_queue_errmsg(q));
    assert_int_equal(out.created, 1);
    if (id != NULL)
        memcpy(id, out.id, JN_QUEUE_ID_LEN);
}

/* Claims the next github job: 0, or 1 when none is ready. */
static int claim(jn_queue_t *q, jn_queue_job_t *job)
{
    int rc = jn_queue_claim(q, "github", job);

    if (rc < 0)
        fail_msg("claim: %s", jn_queue_errmsg(q));
    return rc;
}

static void test_enqueue_claim_ack(void **state)
{
    fixture_t *f = *state;
    jn_queue_job_t job;
    char id[JN_QUEUE_ID_LEN];

    enqueue(f->q, NULL, "org-a", JN_PRIORITY_NORMAL, "{\"integration_id\":\"gh-1\"}", id);
    assert_int_equal(strlen(id), 32);
    assert_int_equal(jn_queue_claim(f->q, "slack", &job), 1); /* another provider */
    assert_int_equal(claim(f->q, &job), 0);
    assert_string_equal(job.id, id);
    assert_string_equal(job.payload_json, "{\"integration_id\":\"gh-1\"}");
    assert_string_equal(job.organization_id, "org-a");
    assert_string_equal(job.consumer, "worker-1");
    assert_int_equal(job.state, JN_QSTATE_RUNNING);
    assert_int_equal(job.attempts, 1);
    assert_int_equal(job.max_attempts, 3);
    assert_int_equal(job.ready_ms, T0 + VISIBILITY);
    assert_int_equal(job.enqueued_ms, T0);
    assert_int_equal(jn_queue_claim(f->q, "github", &(jn_queue_job_t){0}), 1);
    assert_int_equal(jn_queue_ack(f->q, &job), 0);
    assert_int_equal(jn_queue_ack(f->q, &job), 1); /* already finished */
    jn_queue_job_clear(&job);
    assert_int_equal(jn_queue_get(f->q, id, &job), 0);
    assert_int_equal(job.state, JN_QSTATE_DONE);
    assert_int_equal(job.finished_ms, T0);
    assert_null(job.consumer);
    jn_queue_job_clear(&job);
    assert_int_equal(jn_queue_get(f->q, "0000", &job), 1);
}

static void test_enqueue_validation(void **state)
{
    fixture_t *f = *state;
    jn_queue_enqueue_t e = {0};
    jn_queue_enqueued_t out;

    e.provider = "github";
    e.payload_json = "{}";
    assert_int_equal(jn_queue_enqueue(f->q, &e, &out), -1);
    assert_non_null(strstr(jn_queue_errmsg(f->q), "no organization"));
    e.organization_id = "o";
    e.priority = (jn_priority_t)7;
    assert_int_equal(jn_queue_enqueue(f->q, &e, &out), -1);
    assert_non_null(strstr(jn_queue_errmsg(f->q), "invalid priority"));
    assert_int_equal(jn_priority_parse("high"), JN_PRIORITY_HIGH);
    assert_int_equal(jn_priority_parse("urgent"), -1);
    assert_string_equal(jn_priority_name(JN_PRIORITY_LOW), "low");
}

/* Several schedulers enqueue the same slots: each slot is one job. */
static void test_idempotency_key_across_connections(void **state)
{
    fixture_t *f = *state;
    jn_store_t *s2 = open_store(f);
    jn_queue_t *q2 = open_queue(f, s2, "scheduler-2");
    jn_queue_enqueue_t e = {0};
    jn_queue_enqueued_t a, b;
    char key[64];
    int i, created = 0;

    e.provider = "github";
    e.organization_id = "org-a";
    e.payload_json = "{}";
    for (i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "gh-1@slot-%d", i % 10);
        e.idempotency_key = key;
        assert_int_equal(jn_queue_enqueue(i % 2 ? q2 : f->q, &e, &a), 0);
        assert_int_equal(jn_queue_enqueue(i % 2 ? f->q : q2, &e, &b), 0);
        assert_string_equal(a.id, b.id);
        assert_int_equal(b.created, 0);
        created += a.created;
    }
    assert_int_equal(created, 10);
    /* ten jobs in the queue, whoever claims */
    for (i = 0; i < 10; i++) {
        jn_queue_job_t job;
        assert_int_equal(claim(i % 2 ? q2 : f->q, &job), 0);
        jn_queue_job_clear(&job);
    }
    assert_int_equal(jn_queue_claim(f->q, "github", &(jn_queue_job_t){0}), 1);
    jn_queue_destroy(q2);
    jn_store_close(s2);
}

static void test_priority_then_age(void **state)
{
    fixture_t *f = *state;
    char low[JN_QUEUE_ID_LEN], norm1[JN_QUEUE_ID_LEN], norm2[JN_QUEUE_ID_LEN],
        high[JN_QUEUE_ID_LEN];
    jn_queue_job_t job;

    enqueue(f->q, NULL, "org-a", JN_PRIORITY_LOW, NULL, low);
    f->now += SEC;
    enqueue(f->q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, norm1);
    f->now += SEC;
    enqueue(f->q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, norm2);
    f->now += SEC;
    enqueue(f->q, NULL, "org-a", JN_PRIORITY_HIGH, NULL, high);
    assert_int_equal(claim(f->q, &job), 0);
    assert_string_equal(job.id, high);
    assert_int_equal(job.priority, JN_PRIORITY_HIGH);
    jn_queue_job_clear(&job);
    assert_int_equal(claim(f->q, &job), 0);
    assert_string_equal(job.id, norm1);
    jn_queue_job_clear(&job);
    assert_int_equal(claim(f->q, &job), 0);
    assert_string_equal(job.id, norm2);
    jn_queue_job_clear(&job);
    assert_int_equal(claim(f->q, &job), 0);
    assert_string_equal(job.id, low);
    jn_queue_job_clear(&job);
}

/* One organization's backlog does not starve the others: turns go round. */
static void test_fairness_across_organizations(void **state)
{
    fixture_t *f = *state;
    static const char *const orgs[] = {"org-a", "org-a", "org-a", "org-a", "org-a",
                                       "org-a", "org-b", "org-b", "org-c"};
    static const char *const expect[] = {"org-a", "org-b", "org-c", "org-a", "org-b",
                                         "org-a", "org-a", "org-a", "org-a"};
    char ids[9][JN_QUEUE_ID_LEN];
    jn_queue_job_t job;
    size_t i, a_seen = 0;

    for (i = 0; i < 9; i++) {
        enqueue(f->q, NULL, orgs[i], JN_PRIORITY_NORMAL, NULL, ids[i]);
        f->now += SEC;
    }
    for (i = 0; i < 9; i++) {
        assert_int_equal(claim(f->q, &job), 0);
        assert_string_equal(job.organization_id, expect[i]);
        /* oldest first within an organization */
        if (strcmp(job.organization_id, "org-a") == 0)
            assert_string_equal(job.id, ids[a_seen++]);
        jn_queue_job_clear(&job);
    }
    assert_int_equal(claim(f->q, &job), 1);
}

/* A worker that dies leaves its job to the next claim after the lease. */
static void test_lease_expiry_reclaim(void **state)
{
    fixture_t *f = *state;
    jn_store_t *s2 = open_store(f);
    jn_queue_t *q2 = open_queue(f, s2, "worker-2");
    jn_queue_job_t first, again;
    char id[JN_QUEUE_ID_LEN];

    enqueue(f->q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, id);
    assert_int_equal(claim(f->q, &first), 0);
    f->now += VISIBILITY - 1;
    assert_int_equal(claim(q2, &again), 1);
    f->now += 2;
    assert_int_equal(claim(q2, &again), 0);
    assert_string_equal(again.id, id);
    assert_int_equal(again.attempts, 2);
    assert_string_equal(again.consumer, "worker-2");
    /* the first worker comes back: its lease is gone, its ack does nothing */
    assert_int_equal(jn_queue_ack(f->q, &first), 1);
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

    enqueue(f->q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, NULL);
    assert_int_equal(claim(f->q, &job), 0);
    f->now += VISIBILITY * 9 / 10;
    assert_int_equal(jn_queue_heartbeat(f->q), 0);
    f->now += VISIBILITY * 9 / 10;
    assert_int_equal(claim(q2, &other), 1);
    assert_int_equal(jn_queue_heartbeat(q2), 0); /* holds nothing: no effect */
    f->now += VISIBILITY;
    assert_int_equal(claim(q2, &other), 0);
    jn_queue_job_clear(&job);
    jn_queue_job_clear(&other);
    jn_queue_destroy(q2);
    jn_store_close(s2);
}

static void test_retry_backoff_then_dead_letter(void **state)
{
    fixture_t *f = *state;
    jn_queue_job_t job, dead_job;
    char id[JN_QUEUE_ID_LEN];
    int dead = -1;
    int64_t delay;

    enqueue(f->q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, id);
    assert_int_equal(claim(f->q, &job), 0);
    assert_int_equal(jn_queue_nack(f->q, &job, "HTTP 502 from the provider", 0, &dead), 0);
    assert_int_equal(dead, 0);
    jn_queue_job_clear(&job);
    assert_int_equal(jn_queue_get(f->q, id, &job), 0);
    assert_int_equal(job.state, JN_QSTATE_QUEUED);
    assert_string_equal(job.last_error, "HTTP 502 from the provider");
    delay = job.ready_ms - T0;
    assert_true(delay >= 30 * SEC && delay <= 33 * SEC);
    assert_int_equal(delay, jn_queue_backoff_ms(f->q, id, 1));
    jn_queue_job_clear(&job);
    assert_int_equal(claim(f->q, &job), 1); /* not before its retry time */
    f->now = T0 + delay;
    assert_int_equal(claim(f->q, &job), 0);
    assert_int_equal(job.attempts, 2);
    assert_int_equal(jn_queue_nack(f->q, &job, "again", 0, &dead), 0);
    assert_int_equal(dead, 0);
    jn_queue_job_clear(&job);
    assert_int_equal(jn_queue_get(f->q, id, &job), 0);
    delay = job.ready_ms - f->now;
    assert_true(delay >= 60 * SEC && delay <= 66 * SEC);
    f->now = job.ready_ms;
    jn_queue_job_clear(&job);
    assert_int_equal(claim(f->q, &job), 0);
    assert_int_equal(job.attempts, 3);
    assert_int_equal(jn_queue_nack(f->q, &job, "for the last time", 0, &dead), 0);
    assert_int_equal(dead, 1);
    jn_queue_job_clear(&job);
    f->now += 3600 * SEC;
    assert_int_equal(claim(f->q, &job), 1);
    /* kept and listable */
    assert_int_equal(jn_queue_get(f->q, id, &dead_job), 0);
    assert_int_equal(dead_job.state, JN_QSTATE_DEAD);
    assert_string_equal(dead_job.last_error, "for the last time");
    jn_queue_job_clear(&dead_job);
}

static int count_job(void *ud, const jn_queue_job_t *j)
{
    (*(int *)ud)++;
    assert_non_null(j->id);
    return 0;
}

static void test_dead_letters_listed(void **state)
{
    fixture_t *f = *state;
    jn_queue_enqueue_t e = {0};
    jn_queue_enqueued_t out;
    jn_queue_job_t job;
    int dead, n = 0, i;

    e.provider = "github";
    e.organization_id = "org-a";
    e.payload_json = "{}";
    e.max_attempts = 1;
    for (i = 0; i < 2; i++)
        assert_int_equal(jn_queue_enqueue(f->q, &e, &out), 0);
    for (i = 0; i < 2; i++) {
        assert_int_equal(claim(f->q, &job), 0);
        assert_int_equal(job.max_attempts, 1);
        assert_int_equal(jn_queue_nack(f->q, &job, "boom", 0, &dead), 0);
        assert_int_equal(dead, 1);
        jn_queue_job_clear(&job);
    }
    assert_int_equal(jn_queue_each(f->q, JN_QSTATE_DEAD, "github", count_job, &n), 0);
    assert_int_equal(n, 2);
    n = 0;
    assert_int_equal(jn_queue_each(f->q, JN_QSTATE_DEAD, "slack", count_job, &n), 0);
    assert_int_equal(n, 0);
}

static int collect_id(void *ud, const char *id)
{
    snprintf(ud, JN_QUEUE_ID_LEN, "%s", id);
    return 0;
}

static void test_cancel(void **state)
{
    fixture_t *f = *state;
    jn_store_t *s2 = open_store(f);
    jn_queue_t *cli = open_queue(f, s2, "cli");
    char queued[JN_QUEUE_ID_LEN], running[JN_QUEUE_ID_LEN], seen[JN_QUEUE_ID_LEN] = "";
    jn_queue_job_t job, got;
    jn_queue_state_t before;
    int dead;

    enqueue(f->q, NULL, "org-a", JN_PRIORITY_HIGH, NULL, running);
    enqueue(f->q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, queued);
    assert_int_equal(claim(f->q, &job), 0);
    assert_string_equal(job.id, running);
    /* queued: removed from the queue at once */
    assert_int_equal(jn_queue_cancel(cli, queued, &before), 0);
    assert_int_equal(before, JN_QSTATE_QUEUED);
    assert_int_equal(claim(f->q, &got), 1);
    assert_int_equal(jn_queue_get(cli, queued, &got), 0);
    assert_int_equal(got.state, JN_QSTATE_CANCELLED);
    jn_queue_job_clear(&got);
    /* running: flagged for its holder, who stops it */
    assert_int_equal(jn_queue_cancel(cli, running, &before), 0);
    assert_int_equal(before, JN_QSTATE_RUNNING);
    assert_int_equal(jn_queue_poll_cancelled(cli, collect_id, seen), 0);
    assert_string_equal(seen, ""); /* not the holder */
    assert_int_equal(jn_queue_poll_cancelled(f->q, collect_id, seen), 0);
    assert_string_equal(seen, running);
    /* a failed attempt of a job whose cancellation was requested is not retried */
    assert_int_equal(jn_queue_nack(f->q, &job, "stopped", 0, &dead), 0);
    assert_int_equal(jn_queue_get(cli, running, &got), 0);
    assert_int_equal(got.state, JN_QSTATE_CANCELLED);
    jn_queue_job_clear(&got);
    /* finished jobs stay as they are; unknown ids are 1 */
    assert_int_equal(jn_queue_cancel(cli, running, &before), 0);
    assert_int_equal(before, JN_QSTATE_CANCELLED);
    assert_int_equal(jn_queue_cancel(cli, "nope", &before), 1);
    jn_queue_job_clear(&job);

    /* cancel_job: the worker stops a job it holds */
    enqueue(f->q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, queued);
    assert_int_equal(claim(f->q, &job), 0);
    assert_int_equal(jn_queue_cancel_job(f->q, &job, "integration removed"), 0);
    assert_int_equal(jn_queue_get(cli, queued, &got), 0);
    assert_int_equal(got.state, JN_QSTATE_CANCELLED);
    assert_string_equal(got.last_error, "integration removed");
    jn_queue_job_clear(&got);
    jn_queue_job_clear(&job);
    jn_queue_destroy(cli);
    jn_store_close(s2);
}

static void test_release_does_not_count(void **state)
{
    fixture_t *f = *state;
    jn_queue_job_t job;

    enqueue(f->q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, NULL);
    assert_int_equal(claim(f->q, &job), 0);
    assert_int_equal(jn_queue_release(f->q, &job), 0);
    jn_queue_job_clear(&job);
    assert_int_equal(claim(f->q, &job), 0);
    assert_int_equal(job.attempts, 1);
    jn_queue_job_clear(&job);
}

/* Jobs of one integration never run at once; a queued one absorbs new slots. */
static void test_groups_and_coalescing(void **state)
{
    fixture_t *f = *state;
    jn_queue_enqueue_t e = {0};
    jn_queue_enqueued_t a, b, c;
    jn_queue_job_t job, second;

    e.provider = "github";
    e.organization_id = "org-a";
    e.payload_json = "{}";
    e.group_key = "gh-1";
    e.flags = JN_QUEUE_COALESCE;
    assert_int_equal(jn_queue_enqueue(f->q, &e, &a), 0);
    assert_int_equal(a.created, 1);
    assert_int_equal(jn_queue_enqueue(f->q, &e, &b), 0);
    assert_int_equal(b.created, 0);
    assert_int_equal(b.coalesced, 1);
    assert_string_equal(a.id, b.id);
    assert_int_equal(claim(f->q, &job), 0);
    /* running, not queued: a new one is added, but not handed out yet */
    assert_int_equal(jn_queue_enqueue(f->q, &e, &c), 0);
    assert_int_equal(c.created, 1);
    assert_int_equal(claim(f->q, &second), 1);
    assert_int_equal(jn_queue_ack(f->q, &job), 0);
    assert_int_equal(claim(f->q, &second), 0);
    assert_string_equal(second.id, c.id);
    jn_queue_job_clear(&job);
    jn_queue_job_clear(&second);
}

typedef struct {
    jn_queue_stat_t rows[8];
    char providers[8][32];
    int n;
} stats_t;

static int collect_stat(void *ud, const jn_queue_stat_t *s)
{
    stats_t *st = ud;

    if (st->n < 8) {
        st->rows[st->n] = *s;
        snprintf(st->providers[st->n], 32, "%s", s->provider);
        st->rows[st->n].provider = st->providers[st->n];
        st->n++;
    }
    return 0;
}

static void test_stats_depth_and_age(void **state)
{
    fixture_t *f = *state;
    jn_queue_enqueue_t e = {0};
    jn_queue_enqueued_t out;
    jn_queue_job_t job;
    stats_t st = {0};
    int i;

    e.organization_id = "org-a";
    e.payload_json = "{}";
    for (i = 0; i < 3; i++) {
        e.provider = "github";
        e.priority = JN_PRIORITY_NORMAL;
        assert_int_equal(jn_queue_enqueue(f->q, &e, &out), 0);
        f->now += 10 * SEC;
    }
    e.provider = "slack";
    e.priority = JN_PRIORITY_HIGH;
    e.not_before_ms = f->now + 3600 * SEC; /* delayed: queued, not ready */
    assert_int_equal(jn_queue_enqueue(f->q, &e, &out), 0);
    assert_int_equal(claim(f->q, &job), 0); /* the oldest github job */
    jn_queue_job_clear(&job);
    f->now += 5 * SEC;
    assert_int_equal(jn_queue_stats(f->q, collect_stat, &st), 0);
    assert_int_equal(st.n, 2);
    assert_string_equal(st.rows[0].provider, "github");
    assert_int_equal(st.rows[0].priority, JN_PRIORITY_NORMAL);
    assert_int_equal(st.rows[0].queued, 2);
    assert_int_equal(st.rows[0].ready, 2);
    assert_int_equal(st.rows[0].running, 1);
    assert_int_equal(st.rows[0].oldest_age_ms, 25 * SEC); /* enqueued at T0 + 10 s */
    assert_string_equal(st.rows[1].provider, "slack");
    assert_int_equal(st.rows[1].queued, 1);
    assert_int_equal(st.rows[1].ready, 0);
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
        enqueue(f->q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, ids[i]);
        f->now += SEC;
    }
    assert_int_equal(claim(f->q, &job), 0);
    assert_string_equal(job.id, ids[0]);
    jn_queue_job_clear(&job);
    /* the process dies: no ack */
    jn_queue_destroy(f->q);
    jn_store_close(f->store);
    f->store = open_store(f);
    f->q = open_queue(f, f->store, "worker-after-restart");
    for (i = 1; i < 4; i++) {
        assert_int_equal(claim(f->q, &job), 0);
        assert_string_equal(job.id, ids[i]);
        assert_int_equal(jn_queue_ack(f->q, &job), 0);
        jn_queue_job_clear(&job);
        seen++;
    }
    assert_int_equal(claim(f->q, &job), 1);
    f->now += VISIBILITY;
    assert_int_equal(claim(f->q, &job), 0);
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
        d = jn_queue_backoff_ms(f->q, "job-x", attempt);
        assert_true(d >= base && d <= base + base / 10);
        assert_int_equal(d, jn_queue_backoff_ms(f->q, "job-x", attempt));
    }
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_enqueue_claim_ack),
        T(test_enqueue_validation),
        T(test_idempotency_key_across_connections),
        T(test_priority_then_age),
        T(test_fairness_across_organizations),
        T(test_lease_expiry_reclaim),
        T(test_heartbeat_keeps_the_lease),
        T(test_retry_backoff_then_dead_letter),
        T(test_dead_letters_listed),
        T(test_cancel),
        T(test_release_does_not_count),
        T(test_groups_and_coalescing),
        T(test_stats_depth_and_age),
        T(test_survives_restart),
        T(test_backoff_curve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
