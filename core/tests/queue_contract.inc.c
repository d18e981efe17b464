/* The jn_queue_* contract (junction/queue.h), shared by the tests of every
 * queue backend: included by test_queue.c (embedded SQLite) and
 * test_queue_redis.c (Redis Streams), which each run these bodies against
 * their own backend beside their backend-specific tests. Not named test_*.c:
 * it is no executable of its own. Needs <cmocka.h> included before it.
 *
 * A backend's fixture starts with a qc_fixture_t (cmocka's state points at
 * it): the queue under test, the driven clock every queue of the test reads,
 * and the backend's hooks. Where a backend has more to check than the
 * contract (what its keys or rows look like at that point), the body calls
 * its probe with the point it reached. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "junction/queue.h"

#define SEC 1000LL
#define T0 1773136800000LL
#define VISIBILITY (60 * SEC)

/* Where a body reaches a state a backend may look at beside the contract. */
typedef enum {
    QC_ENQUEUED_ONE,       /* one normal github job queued */
    QC_CLAIMED_ONE,        /* that job claimed by "worker-1" */
    QC_ACKED_ONE,          /* and acknowledged */
    QC_FINISHED_ONE,       /* id: the finished job */
    QC_VALIDATED,          /* the contract's validation checks passed */
    QC_TEN_HIGH_SLOTS,     /* ten idempotent slots queued, none claimed */
    QC_ONE_HIGH_ONE_LOW,   /* four priorities queued: one high, one low */
    QC_RETRY_DELAYED,      /* the only job nacked, waiting for its retry */
    QC_DEAD_LETTERED,      /* that job dead after its last attempt */
    QC_ONE_NORMAL_QUEUED,  /* one normal job queued, a high one running */
    QC_NORMAL_QUEUE_EMPTY, /* no normal job queued any more */
    QC_DELAYED_CANCELLED,  /* a job waiting for its retry was cancelled */
} qc_point_t;

typedef struct qc_fixture qc_fixture_t;

typedef struct {
    const char *name;
    /* Another queue on the same backend under consumer, with the fixture's
     * options (visibility VISIBILITY, 3 attempts, backoff 30 s..100 s, the
     * fixture's clock). */
    jn_queue_t *(*open)(qc_fixture_t *f, const char *consumer);
    /* Closes a queue open() returned, with whatever it opened for it. */
    void (*close)(qc_fixture_t *f, jn_queue_t *q);
    /* Backend-specific checks at a point; NULL when there are none. */
    void (*probe)(qc_fixture_t *f, qc_point_t point, const char *id);
} qc_backend_t;

struct qc_fixture {
    const qc_backend_t *backend;
    jn_queue_t *q; /* consumer "worker-1" */
    int64_t now;
};

static int64_t qc_clock(void *ud)
{
    return ((qc_fixture_t *)ud)->now;
}

static void qc_probe(qc_fixture_t *f, qc_point_t point, const char *id)
{
    if (f->backend->probe != NULL)
        f->backend->probe(f, point, id);
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
    qc_fixture_t *f = *state;
    jn_queue_job_t job;
    char id[JN_QUEUE_ID_LEN];

    enqueue(f->q, NULL, "org-a", JN_PRIORITY_NORMAL, "{\"integration_id\":\"gh-1\"}", id);
    assert_int_equal(strlen(id), 32);
    qc_probe(f, QC_ENQUEUED_ONE, id);
    assert_int_equal(jn_queue_claim(f->q, "slack", &job), 1); /* another provider */
    assert_int_equal(claim(f->q, &job), 0);
    assert_string_equal(job.id, id);
    assert_string_equal(job.payload_json, "{\"integration_id\":\"gh-1\"}");
    assert_string_equal(job.organization_id, "org-a");
    assert_string_equal(job.provider, "github");
    assert_string_equal(job.consumer, "worker-1");
    assert_int_equal(job.state, JN_QSTATE_RUNNING);
    assert_int_equal(job.attempts, 1);
    assert_int_equal(job.max_attempts, 3);
    assert_int_equal(job.ready_ms, T0 + VISIBILITY);
    assert_int_equal(job.enqueued_ms, T0);
    qc_probe(f, QC_CLAIMED_ONE, id);
    assert_int_equal(jn_queue_claim(f->q, "github", &(jn_queue_job_t){0}), 1);
    assert_int_equal(jn_queue_ack(f->q, &job), 0);
    assert_int_equal(jn_queue_ack(f->q, &job), 1); /* already finished */
    qc_probe(f, QC_ACKED_ONE, id);
    jn_queue_job_clear(&job);
    assert_int_equal(jn_queue_get(f->q, id, &job), 0);
    assert_int_equal(job.state, JN_QSTATE_DONE);
    assert_int_equal(job.finished_ms, T0);
    assert_null(job.consumer);
    jn_queue_job_clear(&job);
    assert_int_equal(jn_queue_get(f->q, "0000", &job), 1);
    qc_probe(f, QC_FINISHED_ONE, id);
}

static void test_enqueue_validation(void **state)
{
    qc_fixture_t *f = *state;
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
    qc_probe(f, QC_VALIDATED, NULL);
}

/* Several schedulers enqueue the same slots: each slot is one job. */
static void test_idempotency_key_across_connections(void **state)
{
    qc_fixture_t *f = *state;
    jn_queue_t *q2 = f->backend->open(f, "scheduler-2");
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
    qc_probe(f, QC_TEN_HIGH_SLOTS, NULL);
    /* ten jobs in the queue, whoever claims */
    for (i = 0; i < 10; i++) {
        jn_queue_job_t job;
        assert_int_equal(claim(i % 2 ? q2 : f->q, &job), 0);
        jn_queue_job_clear(&job);
    }
    assert_int_equal(jn_queue_claim(f->q, "github", &(jn_queue_job_t){0}), 1);
    f->backend->close(f, q2);
}

static void test_priority_then_age(void **state)
{
    qc_fixture_t *f = *state;
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
    qc_probe(f, QC_ONE_HIGH_ONE_LOW, NULL);
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
    qc_fixture_t *f = *state;
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

static void test_retry_backoff_then_dead_letter(void **state)
{
    qc_fixture_t *f = *state;
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
    qc_probe(f, QC_RETRY_DELAYED, id);
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
    qc_probe(f, QC_DEAD_LETTERED, id);
    /* kept and listable, and the job says so */
    assert_int_equal(jn_queue_get(f->q, id, &dead_job), 0);
    assert_int_equal(dead_job.state, JN_QSTATE_DEAD);
    assert_string_equal(dead_job.last_error, "for the last time");
    jn_queue_job_clear(&dead_job);
}

typedef struct {
    int n;
    char last_error[64];
    char payload[64];
    int attempts;
} dead_seen_t;

static int count_job(void *ud, const jn_queue_job_t *j)
{
    dead_seen_t *d = ud;

    d->n++;
    assert_non_null(j->id);
    assert_int_equal(j->state, JN_QSTATE_DEAD);
    snprintf(d->last_error, sizeof(d->last_error), "%s", j->last_error ? j->last_error : "");
    snprintf(d->payload, sizeof(d->payload), "%s", j->payload_json ? j->payload_json : "");
    d->attempts = j->attempts;
    return 0;
}

static void test_dead_letters_listed(void **state)
{
    qc_fixture_t *f = *state;
    jn_queue_enqueue_t e = {0};
    jn_queue_enqueued_t out;
    jn_queue_job_t job;
    dead_seen_t d = {0};
    int dead, i;

    e.provider = "github";
    e.organization_id = "org-a";
    e.payload_json = "{\"integration_id\":\"gh-9\"}";
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
    assert_int_equal(jn_queue_each(f->q, JN_QSTATE_DEAD, "github", count_job, &d), 0);
    assert_int_equal(d.n, 2);
    assert_string_equal(d.last_error, "boom");
    assert_string_equal(d.payload, "{\"integration_id\":\"gh-9\"}");
    assert_int_equal(d.attempts, 1);
    d.n = 0;
    assert_int_equal(jn_queue_each(f->q, JN_QSTATE_DEAD, NULL, count_job, &d), 0);
    assert_int_equal(d.n, 2);
    d.n = 0;
    assert_int_equal(jn_queue_each(f->q, JN_QSTATE_DEAD, "slack", count_job, &d), 0);
    assert_int_equal(d.n, 0);
}

static int collect_id(void *ud, const char *id)
{
    snprintf(ud, JN_QUEUE_ID_LEN, "%s", id);
    return 0;
}

static void test_cancel(void **state)
{
    qc_fixture_t *f = *state;
    jn_queue_t *cli = f->backend->open(f, "cli");
    char queued[JN_QUEUE_ID_LEN], running[JN_QUEUE_ID_LEN], seen[JN_QUEUE_ID_LEN] = "";
    jn_queue_job_t job, got;
    jn_queue_state_t before;
    int dead;

    enqueue(f->q, NULL, "org-a", JN_PRIORITY_HIGH, NULL, running);
    enqueue(f->q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, queued);
    assert_int_equal(claim(f->q, &job), 0);
    assert_string_equal(job.id, running);
    /* queued: removed from the queue at once */
    qc_probe(f, QC_ONE_NORMAL_QUEUED, queued);
    assert_int_equal(jn_queue_cancel(cli, queued, &before), 0);
    assert_int_equal(before, JN_QSTATE_QUEUED);
    qc_probe(f, QC_NORMAL_QUEUE_EMPTY, queued);
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
    assert_int_equal(dead, 0);
    assert_int_equal(jn_queue_get(cli, running, &got), 0);
    assert_int_equal(got.state, JN_QSTATE_CANCELLED);
    jn_queue_job_clear(&got);
    /* finished jobs stay as they are; unknown ids are 1 */
    assert_int_equal(jn_queue_cancel(cli, running, &before), 0);
    assert_int_equal(before, JN_QSTATE_CANCELLED);
    assert_int_equal(jn_queue_cancel(cli, "nope", &before), 1);
    jn_queue_job_clear(&job);

    /* a job waiting for its retry is cancelled while it waits */
    enqueue(f->q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, queued);
    assert_int_equal(claim(f->q, &job), 0);
    assert_int_equal(jn_queue_nack(f->q, &job, "later", 0, &dead), 0);
    jn_queue_job_clear(&job);
    assert_int_equal(jn_queue_cancel(cli, queued, &before), 0);
    assert_int_equal(before, JN_QSTATE_QUEUED);
    qc_probe(f, QC_DELAYED_CANCELLED, queued);

    /* cancel_job: the worker stops a job it holds */
    enqueue(f->q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, queued);
    assert_int_equal(claim(f->q, &job), 0);
    assert_int_equal(jn_queue_cancel_job(f->q, &job, "integration removed"), 0);
    assert_int_equal(jn_queue_get(cli, queued, &got), 0);
    assert_int_equal(got.state, JN_QSTATE_CANCELLED);
    assert_string_equal(got.last_error, "integration removed");
    qc_probe(f, QC_NORMAL_QUEUE_EMPTY, queued);
    jn_queue_job_clear(&got);
    jn_queue_job_clear(&job);
    f->backend->close(f, cli);
}

static void test_release_does_not_count(void **state)
{
    qc_fixture_t *f = *state;
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
    qc_fixture_t *f = *state;
    jn_queue_t *q2 = f->backend->open(f, "worker-2");
    jn_queue_enqueue_t e = {0};
    jn_queue_enqueued_t a, b, c, d;
    jn_queue_job_t job, second;
    char running[JN_QUEUE_ID_LEN];

    e.provider = "github";
    e.organization_id = "org-a";
    e.payload_json = "{}";
    e.group_key = "gh-1";
    e.flags = JN_QUEUE_COALESCE;
    e.idempotency_key = "gh-1@1";
    assert_int_equal(jn_queue_enqueue(f->q, &e, &a), 0);
    assert_int_equal(a.created, 1);
    e.idempotency_key = "gh-1@2";
    assert_int_equal(jn_queue_enqueue(f->q, &e, &b), 0);
    assert_int_equal(b.created, 0);
    assert_int_equal(b.coalesced, 1);
    assert_string_equal(a.id, b.id);
    /* another scheduler firing the absorbed slot gets the same answer */
    assert_int_equal(jn_queue_enqueue(q2, &e, &d), 0);
    assert_int_equal(d.created, 0);
    assert_string_equal(d.id, a.id);
    /* queued is not running */
    assert_int_equal(jn_queue_group_running(f->q, "gh-1", running), 1);
    assert_int_equal(claim(f->q, &job), 0);
    /* any consumer sees which job of the group runs; other groups have none */
    assert_int_equal(jn_queue_group_running(q2, "gh-1", running), 0);
    assert_string_equal(running, a.id);
    assert_int_equal(jn_queue_group_running(q2, "gh-2", running), 1);
    assert_int_equal(jn_queue_group_running(q2, "", running), 1);
    /* running, not queued: a new one is added, but handed out to nobody yet */
    e.idempotency_key = "gh-1@3";
    assert_int_equal(jn_queue_enqueue(f->q, &e, &c), 0);
    assert_int_equal(c.created, 1);
    assert_int_equal(claim(f->q, &second), 1);
    assert_int_equal(claim(q2, &second), 1);
    assert_int_equal(jn_queue_ack(f->q, &job), 0);
    assert_int_equal(jn_queue_group_running(f->q, "gh-1", running), 1);
    assert_int_equal(claim(q2, &second), 0);
    assert_string_equal(second.id, c.id);
    assert_int_equal(jn_queue_group_running(f->q, "gh-1", running), 0);
    assert_string_equal(running, c.id);
    jn_queue_job_clear(&job);
    jn_queue_job_clear(&second);
    f->backend->close(f, q2);
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
    qc_fixture_t *f = *state;
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
    assert_int_equal(st.rows[1].running, 0);
}

/* The contract tests, for a backend's test list: T wraps each with the
 * backend's setup and teardown. */
#define QC_CONTRACT_TESTS(T)                                                                       \
    T(test_enqueue_claim_ack), T(test_enqueue_validation),                                         \
        T(test_idempotency_key_across_connections), T(test_priority_then_age),                     \
        T(test_fairness_across_organizations), T(test_retry_backoff_then_dead_letter),             \
        T(test_dead_letters_listed), T(test_cancel), T(test_release_does_not_count),               \
        T(test_groups_and_coalescing), T(test_stats_depth_and_age)
