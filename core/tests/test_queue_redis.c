/* The Redis Streams job queue (queue_redis.h) against the real redis-server
 * of the ctest fixture (JUNCTION_TEST_REDIS_URL), each test under its own key
 * prefix; private servers for a restart and a password. The queue's clock is
 * driven (retry times); leases are Redis's idle times, so the tests that let
 * one expire wait for it. Several processes (fork) enqueue and claim at once
 * where the contract is about concurrency: one job per slot, one holder per
 * job. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_redis_support.h"

#include "junction/queue.h"
#include "junction/queue_redis.h"

#define SEC 1000LL
#define T0 1773136800000LL
#define VISIBILITY (60 * SEC)
#define SHORT_VISIBILITY 300

typedef struct {
    char prefix[160];
    char url[256];
    jn_queue_t *q;
    redisContext *check; /* blocking connection for looking at the keys */
    int64_t now;
} fixture_t;

static int64_t clock_fn(void *ud)
{
    return ((fixture_t *)ud)->now;
}

static jn_queue_t *open_queue_at(fixture_t *f, const char *url, const char *consumer,
                                 int64_t visibility)
{
    jn_queue_opts_t o = {0};
    jn_queue_redis_opts_t ro = {0};
    char err[512] = "";
    jn_queue_t *q;

    o.consumer = consumer;
    o.visibility_timeout_ms = visibility;
    o.max_attempts = 3;
    o.retry_base_ms = 30 * SEC;
    o.retry_max_ms = 100 * SEC;
    o.now_ms = clock_fn;
    o.clock_ud = f;
    ro.prefix = f->prefix;
    q = jn_queue_open_redis(url, &ro, &o, err, sizeof(err));
    if (q == NULL)
        fail_msg("queue: %s", err);
    return q;
}

static jn_queue_t *open_queue(fixture_t *f, const char *consumer, int64_t visibility)
{
    return open_queue_at(f, f->url, consumer, visibility);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    rt_prefix(f->prefix, sizeof(f->prefix), "queue");
    snprintf(f->url, sizeof(f->url), "%s", rt_fixture_url());
    f->now = T0;
    f->q = open_queue(f, "worker-1", VISIBILITY);
    f->check = rt_sync(rt_fixture_port());
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    jn_queue_destroy(f->q);
    redisFree(f->check);
    rt_kill_all();
    free(f);
    return 0;
}

static long long xlen(fixture_t *f, const char *stream)
{
    return rt_cmd_int(f->check, "XLEN %s%s", f->prefix, stream);
}

static void enqueue_to(jn_queue_t *q, const char *provider, const char *key, const char *org,
                       jn_priority_t prio, const char *payload, char id[JN_QUEUE_ID_LEN])
{
    jn_queue_enqueue_t e = {0};
    jn_queue_enqueued_t out;

    e.idempotency_key = key;
    e.provider = provider;
    e.organization_id = org;
    e.priority = prio;
    e.payload_json = payload ? payload : "{}";
    if (jn_queue_enqueue(q, &e, &out) != 0)
        fail_msg("enqueue: %s", jn_queue_errmsg(q));
    assert_int_equal(out.created, 1);
    if (id != NULL)
        memcpy(id, out.id, JN_QUEUE_ID_LEN);
}

static void enqueue(jn_queue_t *q, const char *key, const char *org, jn_priority_t prio,
                    const char *payload, char id[JN_QUEUE_ID_LEN])
{
    enqueue_to(q, "github", key, org, prio, payload, id);
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
    assert_int_equal(xlen(f, "integrations.jobs.github.normal"), 1);
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
    /* claimed: pending in the group, under this consumer */
    {
        redisReply *r =
            rt_cmd(f->check, "XPENDING %sintegrations.jobs.github.normal workers", f->prefix);
        assert_int_equal(r->element[0]->integer, 1);
        freeReplyObject(r);
    }
    assert_int_equal(jn_queue_claim(f->q, "github", &(jn_queue_job_t){0}), 1);
    assert_int_equal(jn_queue_ack(f->q, &job), 0);
    assert_int_equal(jn_queue_ack(f->q, &job), 1); /* already finished */
    /* acknowledged and removed from the stream */
    assert_int_equal(xlen(f, "integrations.jobs.github.normal"), 0);
    jn_queue_job_clear(&job);
    assert_int_equal(jn_queue_get(f->q, id, &job), 0);
    assert_int_equal(job.state, JN_QSTATE_DONE);
    assert_int_equal(job.finished_ms, T0);
    assert_null(job.consumer);
    jn_queue_job_clear(&job);
    assert_int_equal(jn_queue_get(f->q, "0000", &job), 1);
    /* a finished job's hash expires after the retention */
    assert_true(rt_cmd_int(f->check, "PTTL %sjn:job:%s", f->prefix, id) > 0);
}

static void test_enqueue_validation(void **state)
{
    fixture_t *f = *state;
    jn_queue_enqueue_t e = {0};
    jn_queue_enqueued_t out;
    jn_queue_redis_opts_t ro = {0};
    char err[256] = "";

    e.provider = "github";
    e.payload_json = "{}";
    assert_int_equal(jn_queue_enqueue(f->q, &e, &out), -1);
    assert_non_null(strstr(jn_queue_errmsg(f->q), "no organization"));
    e.organization_id = "o";
    e.priority = (jn_priority_t)7;
    assert_int_equal(jn_queue_enqueue(f->q, &e, &out), -1);
    assert_non_null(strstr(jn_queue_errmsg(f->q), "invalid priority"));
    e.priority = JN_PRIORITY_LOW;
    e.provider = "git.hub"; /* would name another stream */
    assert_int_equal(jn_queue_enqueue(f->q, &e, &out), -1);
    assert_non_null(strstr(jn_queue_errmsg(f->q), "[A-Za-z0-9_-]"));
    assert_int_equal(jn_queue_claim(f->q, "a b", &(jn_queue_job_t){0}), -1);
    /* bad URLs and options never reach Redis; the message names what is wrong */
    assert_null(jn_queue_open_redis("http://127.0.0.1:1", NULL, NULL, err, sizeof(err)));
    assert_true(err[0] != '\0');
    ro.claim_window = -1;
    assert_null(jn_queue_open_redis(f->url, &ro, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "claim_window"));
}

/* Several schedulers enqueue the same slots: each slot is one job. */
static void test_idempotency_key_across_connections(void **state)
{
    fixture_t *f = *state;
    jn_queue_t *q2 = open_queue(f, "scheduler-2", VISIBILITY);
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
    assert_int_equal(xlen(f, "integrations.jobs.github.high"), 10); /* priority 0 */
    /* the key expires with the retention: it outlives any scheduler's catch-up */
    assert_true(rt_cmd_int(f->check, "PTTL %sjn:idem:gh-1@slot-3", f->prefix) > 3600 * 1000);
    for (i = 0; i < 10; i++) {
        jn_queue_job_t job;
        assert_int_equal(claim(i % 2 ? q2 : f->q, &job), 0);
        jn_queue_job_clear(&job);
    }
    assert_int_equal(jn_queue_claim(f->q, "github", &(jn_queue_job_t){0}), 1);
    jn_queue_destroy(q2);
}

/* Four processes fire the same 200 slots at once: 200 jobs, no more. */
static void test_concurrent_schedulers_enqueue_each_slot_once(void **state)
{
    fixture_t *f = *state;
    pid_t pids[4];
    int i, status;

    for (i = 0; i < 4; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            char err[512], key[64], name[32];
            jn_queue_opts_t o = {0};
            jn_queue_redis_opts_t ro = {0};
            jn_queue_t *q;
            int s, bad = 0;

            snprintf(name, sizeof(name), "scheduler-%d", i);
            o.consumer = name;
            ro.prefix = f->prefix;
            q = jn_queue_open_redis(f->url, &ro, &o, err, sizeof(err));
            if (q == NULL)
                _exit(2);
            for (s = 0; s < 200; s++) {
                jn_queue_enqueue_t e = {0};
                jn_queue_enqueued_t out;
                /* every process walks the slots from another start */
                snprintf(key, sizeof(key), "int-%d@%d", ((s + i * 50) % 200) % 20,
                         (s + i * 50) % 200);
                e.idempotency_key = key;
                e.provider = "github";
                e.organization_id = "org-a";
                e.payload_json = "{}";
                bad |= jn_queue_enqueue(q, &e, &out) != 0;
            }
            jn_queue_destroy(q);
            _exit(bad);
        }
    }
    for (i = 0; i < 4; i++) {
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    assert_int_equal(xlen(f, "integrations.jobs.github.high"), 200); /* priority 0 */
}

/* Two processes claim from one stream at once: every job goes to one holder. */
static void test_concurrent_workers_never_share_a_job(void **state)
{
    fixture_t *f = *state;
    int fds[2][2], i, status, total = 0;
    pid_t pids[2];
    char seen[400][JN_QUEUE_ID_LEN];

    for (i = 0; i < 400; i++)
        enqueue(f->q, NULL, i % 3 ? "org-a" : "org-b", JN_PRIORITY_NORMAL, NULL, NULL);
    for (i = 0; i < 2; i++) {
        assert_int_equal(pipe(fds[i]), 0);
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            char name[32];
            jn_queue_t *q;
            jn_queue_job_t job;
            close(fds[i][0]);
            snprintf(name, sizeof(name), "worker-%d", i + 10);
            q = open_queue(f, name, VISIBILITY);
            while (jn_queue_claim(q, "github", &job) == 0) {
                if (write(fds[i][1], job.id, JN_QUEUE_ID_LEN) != JN_QUEUE_ID_LEN ||
                    jn_queue_ack(q, &job) != 0)
                    _exit(1);
                jn_queue_job_clear(&job);
            }
            jn_queue_destroy(q);
            _exit(0);
        }
        close(fds[i][1]);
    }
    for (i = 0; i < 2; i++) {
        char id[JN_QUEUE_ID_LEN];
        int got = 0;
        while (read(fds[i][0], id, JN_QUEUE_ID_LEN) == JN_QUEUE_ID_LEN) {
            assert_true(total < 400);
            memcpy(seen[total++], id, JN_QUEUE_ID_LEN);
            got++;
        }
        close(fds[i][0]);
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    assert_int_equal(total, 400);
    for (i = 0; i < total; i++)
        for (int k = i + 1; k < total; k++)
            assert_string_not_equal(seen[i], seen[k]);
    assert_int_equal(xlen(f, "integrations.jobs.github.normal"), 0);
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
    assert_int_equal(xlen(f, "integrations.jobs.github.high"), 1);
    assert_int_equal(xlen(f, "integrations.jobs.github.low"), 1);
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

/* A backlog of 300 jobs of one organization ahead of another's one job: the
 * other's job is handed out second, not after the backlog. */
static void test_fairness_behind_a_backlog(void **state)
{
    fixture_t *f = *state;
    jn_queue_job_t job;
    char lone[JN_QUEUE_ID_LEN];
    int i;

    for (i = 0; i < 300; i++)
        enqueue(f->q, NULL, "org-big", JN_PRIORITY_NORMAL, NULL, NULL);
    enqueue(f->q, NULL, "org-small", JN_PRIORITY_NORMAL, NULL, lone);
    assert_int_equal(claim(f->q, &job), 0);
    assert_string_equal(job.organization_id, "org-big");
    jn_queue_job_clear(&job);
    assert_int_equal(claim(f->q, &job), 0);
    assert_string_equal(job.id, lone);
    jn_queue_job_clear(&job);
    /* the backlog goes on, nothing lost: 299 waiting, 2 claimed */
    assert_int_equal(xlen(f, "integrations.jobs.github.normal"), 301);
    for (i = 0; i < 299; i++) {
        assert_int_equal(claim(f->q, &job), 0);
        assert_string_equal(job.organization_id, "org-big");
        jn_queue_job_clear(&job);
    }
    assert_int_equal(claim(f->q, &job), 1);
}

/* A worker that dies leaves its job pending; after the visibility timeout the
 * next claim takes it over with XAUTOCLAIM. */
static void test_lease_expiry_reclaim(void **state)
{
    fixture_t *f = *state;
    jn_queue_t *q1 = open_queue(f, "worker-short-1", SHORT_VISIBILITY);
    jn_queue_t *q2 = open_queue(f, "worker-short-2", SHORT_VISIBILITY);
    jn_queue_job_t first, again;
    char id[JN_QUEUE_ID_LEN];

    enqueue(f->q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, id);
    assert_int_equal(claim(q1, &first), 0);
    assert_int_equal(claim(q2, &again), 1); /* leased */
    usleep((SHORT_VISIBILITY + 200) * 1000);
    assert_int_equal(claim(q2, &again), 0);
    assert_string_equal(again.id, id);
    assert_int_equal(again.attempts, 2);
    assert_string_equal(again.consumer, "worker-short-2");
    /* the first worker comes back: its lease is gone, its ack does nothing */
    assert_int_equal(jn_queue_ack(q1, &first), 1);
    assert_int_equal(jn_queue_ack(q2, &again), 0);
    jn_queue_job_clear(&first);
    jn_queue_job_clear(&again);
    jn_queue_destroy(q1);
    jn_queue_destroy(q2);
}

static void test_heartbeat_keeps_the_lease(void **state)
{
    fixture_t *f = *state;
    jn_queue_t *q1 = open_queue(f, "worker-hb-1", SHORT_VISIBILITY);
    jn_queue_t *q2 = open_queue(f, "worker-hb-2", SHORT_VISIBILITY);
    jn_queue_job_t job, other;
    int i;

    enqueue(f->q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, NULL);
    assert_int_equal(claim(q1, &job), 0);
    for (i = 0; i < 8; i++) { /* well past the visibility timeout in all */
        usleep(SHORT_VISIBILITY / 3 * 1000);
        assert_int_equal(jn_queue_heartbeat(q1), 0);
        assert_int_equal(claim(q2, &other), 1);
    }
    assert_int_equal(jn_queue_heartbeat(q2), 0); /* holds nothing: no effect */
    usleep((SHORT_VISIBILITY + 200) * 1000);     /* the holder stopped beating */
    assert_int_equal(claim(q2, &other), 0);
    assert_string_equal(other.id, job.id);
    /* the old holder's heartbeat notices the loss and stops renewing */
    assert_int_equal(jn_queue_heartbeat(q1), 0);
    assert_int_equal(jn_queue_ack(q1, &job), 1);
    assert_int_equal(jn_queue_ack(q2, &other), 0);
    jn_queue_job_clear(&job);
    jn_queue_job_clear(&other);
    jn_queue_destroy(q1);
    jn_queue_destroy(q2);
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
    /* waiting in the delayed set, not in the stream */
    assert_int_equal(
        rt_cmd_int(f->check, "ZCARD %sintegrations.jobs.github.normal.delayed", f->prefix), 1);
    assert_int_equal(xlen(f, "integrations.jobs.github.normal"), 0);
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
    /* in the dead-letter stream, and the job says so */
    assert_int_equal(xlen(f, "integrations.jobs.github.normal.dead"), 1);
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
    fixture_t *f = *state;
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
    fixture_t *f = *state;
    jn_queue_t *cli = open_queue(f, "cli", VISIBILITY);
    char queued[JN_QUEUE_ID_LEN], running[JN_QUEUE_ID_LEN], seen[JN_QUEUE_ID_LEN] = "";
    jn_queue_job_t job, got;
    jn_queue_state_t before;
    int dead;

    enqueue(f->q, NULL, "org-a", JN_PRIORITY_HIGH, NULL, running);
    enqueue(f->q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, queued);
    assert_int_equal(claim(f->q, &job), 0);
    assert_string_equal(job.id, running);
    /* queued: removed from its stream at once */
    assert_int_equal(xlen(f, "integrations.jobs.github.normal"), 1);
    assert_int_equal(jn_queue_cancel(cli, queued, &before), 0);
    assert_int_equal(before, JN_QSTATE_QUEUED);
    assert_int_equal(xlen(f, "integrations.jobs.github.normal"), 0);
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

    /* a delayed retry is cancelled out of the delayed set */
    enqueue(f->q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, queued);
    assert_int_equal(claim(f->q, &job), 0);
    assert_int_equal(jn_queue_nack(f->q, &job, "later", 0, &dead), 0);
    jn_queue_job_clear(&job);
    assert_int_equal(jn_queue_cancel(cli, queued, &before), 0);
    assert_int_equal(before, JN_QSTATE_QUEUED);
    assert_int_equal(
        rt_cmd_int(f->check, "ZCARD %sintegrations.jobs.github.normal.delayed", f->prefix), 0);

    /* cancel_job: the worker stops a job it holds */
    enqueue(f->q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, queued);
    assert_int_equal(claim(f->q, &job), 0);
    assert_int_equal(jn_queue_cancel_job(f->q, &job, "integration removed"), 0);
    assert_int_equal(jn_queue_get(cli, queued, &got), 0);
    assert_int_equal(got.state, JN_QSTATE_CANCELLED);
    assert_string_equal(got.last_error, "integration removed");
    assert_int_equal(xlen(f, "integrations.jobs.github.normal"), 0);
    jn_queue_job_clear(&got);
    jn_queue_job_clear(&job);
    jn_queue_destroy(cli);
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
    jn_queue_t *q2 = open_queue(f, "worker-2", VISIBILITY);
    jn_queue_enqueue_t e = {0};
    jn_queue_enqueued_t a, b, c, d;
    jn_queue_job_t job, second;

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
    assert_int_equal(claim(f->q, &job), 0);
    /* running, not queued: a new one is added, but handed out to nobody yet */
    e.idempotency_key = "gh-1@3";
    assert_int_equal(jn_queue_enqueue(f->q, &e, &c), 0);
    assert_int_equal(c.created, 1);
    assert_int_equal(claim(f->q, &second), 1);
    assert_int_equal(claim(q2, &second), 1);
    assert_int_equal(jn_queue_ack(f->q, &job), 0);
    assert_int_equal(claim(q2, &second), 0);
    assert_string_equal(second.id, c.id);
    jn_queue_job_clear(&job);
    jn_queue_job_clear(&second);
    jn_queue_destroy(q2);
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
    assert_int_equal(st.rows[1].running, 0);
}

/* Redis goes away and comes back: calls fail at once with the reason, then
 * work again; a job enqueued before is still there (the server keeps its
 * data across a restart here because it is the same process paused). */
static void test_redis_down_and_back(void **state)
{
    fixture_t *f = *state;
    rt_server_t s = {0};
    char url[128];
    jn_queue_t *q;
    jn_queue_job_t job;
    jn_queue_enqueue_t e = {0};
    jn_queue_enqueued_t out;
    int rc = -1, i;

    rt_server_start(&s);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", s.port);
    q = open_queue_at(f, url, "worker-restart", VISIBILITY);
    e.provider = "github";
    e.organization_id = "org-a";
    e.payload_json = "{}";
    assert_int_equal(jn_queue_enqueue(q, &e, &out), 0);
    rt_server_kill(&s);
    assert_int_equal(jn_queue_claim(q, "github", &job), -1);
    assert_non_null(strstr(jn_queue_errmsg(q), "redis 127.0.0.1:"));
    /* while down, a call fails at once (no connect timeout on the caller) */
    assert_int_equal(jn_queue_enqueue(q, &e, &out), -1);
    rt_server_start(&s); /* same port, empty: no persistence */
    for (i = 0; i < 100 && rc != 0; i++) {
        rc = jn_queue_enqueue(q, &e, &out);
        if (rc != 0)
            usleep(50 * 1000);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(jn_queue_claim(q, "github", &job), 0);
    assert_string_equal(job.id, out.id);
    assert_int_equal(jn_queue_ack(q, &job), 0);
    jn_queue_job_clear(&job);
    jn_queue_destroy(q);
    rt_server_stop(&s);
}

/* A Redis that hangs (SIGSTOP: connections stay open, nothing answers): a
 * call fails once its deadline passed, and the calls after it fail at once
 * (the connection is backing off) instead of each waiting out a deadline on
 * the caller's loop; once Redis answers again, the queue works again. */
static void test_redis_hangs(void **state)
{
    fixture_t *f = *state;
    rt_server_t s = {0};
    jn_queue_opts_t o = {0};
    jn_queue_redis_opts_t ro = {0};
    jn_queue_job_t job;
    char url[128], err[512] = "";
    jn_queue_t *q;
    int rc = -1, i;

    rt_server_start(&s);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", s.port);
    o.consumer = "worker-hang";
    /* the claim that timed out may still run once Redis wakes up: its lease
     * then expires soon and the job is taken over */
    o.visibility_timeout_ms = SHORT_VISIBILITY;
    ro.prefix = f->prefix;
    ro.conn.command_timeout_ms = 200;
    ro.conn.connect_timeout_ms = 200;
    q = jn_queue_open_redis(url, &ro, &o, err, sizeof(err));
    if (q == NULL)
        fail_msg("queue: %s", err);
    enqueue(q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, NULL);
    assert_int_equal(kill(s.pid, SIGSTOP), 0);
    assert_int_equal(jn_queue_claim(q, "github", &job), -1);
    assert_non_null(strstr(jn_queue_errmsg(q), "no reply within the command timeout"));
    assert_int_equal(jn_queue_claim(q, "github", &job), -1);
    assert_non_null(strstr(jn_queue_errmsg(q), "unavailable"));
    assert_int_equal(kill(s.pid, SIGCONT), 0);
    for (i = 0; i < 100 && rc != 0; i++) {
        rc = jn_queue_claim(q, "github", &job);
        if (rc < 0)
            usleep(50 * 1000);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(jn_queue_ack(q, &job), 0);
    jn_queue_job_clear(&job);
    jn_queue_destroy(q);
    rt_server_stop(&s);
}

/* A password-protected server: the password authenticates and appears in no
 * message, a wrong one is refused with Redis's reason. */
static void test_password_never_in_messages(void **state)
{
    fixture_t *f = *state;
    static const char canary[] = "CANARYqueuePASSWORD-7731";
    rt_server_t s = {0};
    char url[256], err[512] = "";
    jn_queue_t *q;
    jn_queue_job_t job;

    snprintf(s.pass, sizeof(s.pass), "%s", canary);
    rt_server_start(&s);
    snprintf(url, sizeof(url), "redis://:%s@127.0.0.1:%d/2", canary, s.port);
    q = open_queue_at(f, url, "worker-auth", VISIBILITY);
    enqueue(q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, NULL);
    assert_int_equal(claim(q, &job), 0);
    assert_int_equal(jn_queue_ack(q, &job), 0);
    jn_queue_job_clear(&job);
    jn_queue_destroy(q);
    snprintf(url, sizeof(url), "redis://:wrong-%s@127.0.0.1:%d/2", canary, s.port);
    assert_null(jn_queue_open_redis(url, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "AUTH failed"));
    assert_null(strstr(err, canary));
    rt_server_kill(&s);
    assert_null(jn_queue_open_redis(url, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "connect failed"));
    assert_null(strstr(err, canary));
    rt_server_stop(&s);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_enqueue_claim_ack),
        T(test_enqueue_validation),
        T(test_idempotency_key_across_connections),
        T(test_concurrent_schedulers_enqueue_each_slot_once),
        T(test_concurrent_workers_never_share_a_job),
        T(test_priority_then_age),
        T(test_fairness_across_organizations),
        T(test_fairness_behind_a_backlog),
        T(test_lease_expiry_reclaim),
        T(test_heartbeat_keeps_the_lease),
        T(test_retry_backoff_then_dead_letter),
        T(test_dead_letters_listed),
        T(test_cancel),
        T(test_release_does_not_count),
        T(test_groups_and_coalescing),
        T(test_stats_depth_and_age),
        T(test_redis_down_and_back),
        T(test_redis_hangs),
        T(test_password_never_in_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
