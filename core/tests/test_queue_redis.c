/* The Redis Streams job queue (queue_redis.h) against the real redis-server
 * of the ctest fixture (JUNCTION_TEST_REDIS_URL), each test under its own key
 * prefix; private servers for a restart and a password. The queue contract
 * (queue_contract.inc.c) runs here too, with a look at the streams, the
 * consumer group and the keys where it reaches a state worth checking. The
 * queue's clock is driven (retry times); leases are Redis's idle times, so
 * the tests that let one expire wait for it. Several processes (fork) enqueue
 * and claim at once where the contract is about concurrency: one job per
 * slot, one holder per job. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_redis_support.h"

#include "junction/queue.h"
#include "junction/queue_redis.h"

#include "queue_contract.inc.c"

#define SHORT_VISIBILITY 300

typedef struct {
    qc_fixture_t qc; /* first: the contract tests see only this */
    char prefix[160];
    char url[256];
    redisContext *check; /* blocking connection for looking at the keys */
} fixture_t;

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
    o.now_ms = qc_clock;
    o.clock_ud = &f->qc;
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

static long long xlen(fixture_t *f, const char *stream)
{
    return rt_cmd_int(f->check, "XLEN %s%s", f->prefix, stream);
}

static jn_queue_t *redis_open(qc_fixture_t *qc, const char *consumer)
{
    return open_queue((fixture_t *)qc, consumer, VISIBILITY);
}

static void redis_close(qc_fixture_t *qc, jn_queue_t *q)
{
    (void)qc;
    jn_queue_destroy(q);
}

/* What the contract's states look like in the keys: one stream per provider
 * and priority, a consumer group, a delayed set and a dead-letter stream per
 * stream, job hashes and idempotency keys that expire. */
static void redis_probe(qc_fixture_t *qc, qc_point_t point, const char *id)
{
    fixture_t *f = (fixture_t *)qc;

    switch (point) {
    case QC_ENQUEUED_ONE:
        assert_int_equal(xlen(f, "integrations.jobs.github.normal"), 1);
        break;
    case QC_CLAIMED_ONE: {
        /* claimed: pending in the group, under this consumer */
        redisReply *r =
            rt_cmd(f->check, "XPENDING %sintegrations.jobs.github.normal workers", f->prefix);
        assert_int_equal(r->element[0]->integer, 1);
        freeReplyObject(r);
        break;
    }
    case QC_ACKED_ONE:
        /* acknowledged and removed from the stream */
        assert_int_equal(xlen(f, "integrations.jobs.github.normal"), 0);
        break;
    case QC_FINISHED_ONE:
        /* a finished job's hash expires after the retention */
        assert_true(rt_cmd_int(f->check, "PTTL %sjn:job:%s", f->prefix, id) > 0);
        break;
    case QC_VALIDATED: {
        jn_queue_enqueue_t e = {0};
        jn_queue_enqueued_t out;
        jn_queue_redis_opts_t ro = {0};
        char err[256] = "";

        e.organization_id = "o";
        e.payload_json = "{}";
        e.priority = JN_PRIORITY_LOW;
        e.provider = "git.hub"; /* would name another stream */
        assert_int_equal(jn_queue_enqueue(f->qc.q, &e, &out), -1);
        assert_non_null(strstr(jn_queue_errmsg(f->qc.q), "[A-Za-z0-9_-]"));
        assert_int_equal(jn_queue_claim(f->qc.q, "a b", &(jn_queue_job_t){0}), -1);
        /* bad URLs and options never reach Redis; the message names what is wrong */
        assert_null(jn_queue_open_redis("http://127.0.0.1:1", NULL, NULL, err, sizeof(err)));
        assert_true(err[0] != '\0');
        ro.claim_window = -1;
        assert_null(jn_queue_open_redis(f->url, &ro, NULL, err, sizeof(err)));
        assert_non_null(strstr(err, "claim_window"));
        break;
    }
    case QC_TEN_HIGH_SLOTS:
        assert_int_equal(xlen(f, "integrations.jobs.github.high"), 10); /* priority 0 */
        /* the key expires with the retention: it outlives any scheduler's catch-up */
        assert_true(rt_cmd_int(f->check, "PTTL %sjn:idem:gh-1@slot-3", f->prefix) > 3600 * 1000);
        break;
    case QC_ONE_HIGH_ONE_LOW:
        assert_int_equal(xlen(f, "integrations.jobs.github.high"), 1);
        assert_int_equal(xlen(f, "integrations.jobs.github.low"), 1);
        break;
    case QC_RETRY_DELAYED:
        /* waiting in the delayed set, not in the stream */
        assert_int_equal(
            rt_cmd_int(f->check, "ZCARD %sintegrations.jobs.github.normal.delayed", f->prefix), 1);
        assert_int_equal(xlen(f, "integrations.jobs.github.normal"), 0);
        break;
    case QC_DEAD_LETTERED:
        /* in the dead-letter stream */
        assert_int_equal(xlen(f, "integrations.jobs.github.normal.dead"), 1);
        break;
    case QC_ONE_NORMAL_QUEUED:
        assert_int_equal(xlen(f, "integrations.jobs.github.normal"), 1);
        break;
    case QC_NORMAL_QUEUE_EMPTY:
        /* removed from its stream at once */
        assert_int_equal(xlen(f, "integrations.jobs.github.normal"), 0);
        break;
    case QC_DELAYED_CANCELLED:
        /* cancelled out of the delayed set */
        assert_int_equal(
            rt_cmd_int(f->check, "ZCARD %sintegrations.jobs.github.normal.delayed", f->prefix), 0);
        break;
    }
}

static const qc_backend_t redis_backend = {"redis", redis_open, redis_close, redis_probe};

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    rt_prefix(f->prefix, sizeof(f->prefix), "queue");
    snprintf(f->url, sizeof(f->url), "%s", rt_fixture_url());
    f->qc.backend = &redis_backend;
    f->qc.now = T0;
    f->qc.q = open_queue(f, "worker-1", VISIBILITY);
    f->check = rt_sync(rt_fixture_port());
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    jn_queue_destroy(f->qc.q);
    redisFree(f->check);
    rt_kill_all();
    free(f);
    return 0;
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
        enqueue(f->qc.q, NULL, i % 3 ? "org-a" : "org-b", JN_PRIORITY_NORMAL, NULL, NULL);
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

/* A backlog of 300 jobs of one organization ahead of another's one job: the
 * other's job is handed out second, not after the backlog. */
static void test_fairness_behind_a_backlog(void **state)
{
    fixture_t *f = *state;
    jn_queue_job_t job;
    char lone[JN_QUEUE_ID_LEN];
    int i;

    for (i = 0; i < 300; i++)
        enqueue(f->qc.q, NULL, "org-big", JN_PRIORITY_NORMAL, NULL, NULL);
    enqueue(f->qc.q, NULL, "org-small", JN_PRIORITY_NORMAL, NULL, lone);
    assert_int_equal(claim(f->qc.q, &job), 0);
    assert_string_equal(job.organization_id, "org-big");
    jn_queue_job_clear(&job);
    assert_int_equal(claim(f->qc.q, &job), 0);
    assert_string_equal(job.id, lone);
    jn_queue_job_clear(&job);
    /* the backlog goes on, nothing lost: 299 waiting, 2 claimed */
    assert_int_equal(xlen(f, "integrations.jobs.github.normal"), 301);
    for (i = 0; i < 299; i++) {
        assert_int_equal(claim(f->qc.q, &job), 0);
        assert_string_equal(job.organization_id, "org-big");
        jn_queue_job_clear(&job);
    }
    assert_int_equal(claim(f->qc.q, &job), 1);
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

    enqueue(f->qc.q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, id);
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

    enqueue(f->qc.q, NULL, "org-a", JN_PRIORITY_NORMAL, NULL, NULL);
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
        QC_CONTRACT_TESTS(T),
        T(test_concurrent_schedulers_enqueue_each_slot_once),
        T(test_concurrent_workers_never_share_a_job),
        T(test_fairness_behind_a_backlog),
        T(test_lease_expiry_reclaim),
        T(test_heartbeat_keeps_the_lease),
        T(test_redis_down_and_back),
        T(test_redis_hangs),
        T(test_password_never_in_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
