/* The cluster store (store_redis.h): a real SQLite store with Redis attached,
 * against the redis-server of the ctest fixture (JUNCTION_TEST_REDIS_URL)
 * under a key prefix of each test, and a private server that is killed to
 * see a commit fail. The evidence sink is checked in Redis itself: what the
 * stream evidence.raw holds, the cursor key, the dedup sets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_redis_support.h"

#include <ftw.h>

#include "junction/store.h"
#include "junction/store_redis.h"

#include "test_tmpdir.h"

typedef struct {
    char dir[256];
    char path[300];
    char prefix[160];
    jn_store_t *store;
    redisContext *check;
} fixture_t;

static jn_store_t *open_cluster_store(fixture_t *f, const char *url)
{
    jn_store_redis_opts_t o = {0};
    char err[512] = "";
    jn_store_t *s = jn_store_open_sqlite(f->path, err, sizeof(err));

    if (s == NULL)
        fail_msg("open: %s", err);
    o.prefix = f->prefix;
    if (jn_store_attach_redis(s, url, &o, err, sizeof(err)) != 0)
        fail_msg("attach: %s", err);
    return s;
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    tt_tmpdir(f->dir, sizeof(f->dir), "jn-store-redis");
    snprintf(f->path, sizeof(f->path), "%s/junction.db", f->dir);
    rt_prefix(f->prefix, sizeof(f->prefix), "store");
    f->store = open_cluster_store(f, rt_fixture_url());
    f->check = rt_sync(rt_fixture_port());
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    if (f->store)
        jn_store_close(f->store);
    redisFree(f->check);
    rt_kill_all();
    tt_rmtree(f->dir);
    free(f);
    return 0;
}

static jn_evidence_t item(const char *id, const char *integration, const char *run,
                          const char *resource)
{
    jn_evidence_t e = {0};

    e.id = id;
    e.organization_id = "org-a";
    e.integration_id = integration;
    e.provider_type = "github";
    e.resource_type = "github.member";
    e.resource_id = resource;
    e.collected_at = "2026-11-25T10:00:00.000Z";
    e.run_id = run;
    e.connector_version = "1.0.0";
    e.checksum = "00ff";
    e.data = "{\"login\":\"octocat\"}";
    return e;
}

static long long stream_len(fixture_t *f)
{
    return rt_cmd_int(f->check, "XLEN %sevidence.raw", f->prefix);
}

/* A batch and its cursor: one commit, one script; the stream carries every
 * field of the item, the stable id among them. */
static void test_batch_and_cursor_committed_together(void **state)
{
    fixture_t *f = *state;
    jn_evidence_t a = item("id-a", "gh-1", "run-1", "alice"),
                  b = item("id-b", "gh-1", "run-1", "bob");
    redisReply *r;
    char *cursor = NULL;
    int64_t n = 0;
    int inserted = 0;

    assert_true(jn_store_is_redis(f->store));
    assert_int_equal(jn_store_checkpoint_get(f->store, "gh-1", &cursor), 1);
    assert_int_equal(jn_store_begin(f->store), 0);
    assert_int_equal(jn_store_evidence_put(f->store, &a, &inserted), 0);
    assert_int_equal(jn_store_evidence_put(f->store, &b, &inserted), 0);
    assert_int_equal(jn_store_checkpoint_set(f->store, "gh-1", "{\"since\":\"2026-11-25\"}"), 0);
    /* nothing is visible before the commit */
    assert_int_equal(stream_len(f), 0);
    assert_int_equal(jn_store_checkpoint_get(f->store, "gh-1", &cursor), 1);
    assert_int_equal(jn_store_commit(f->store), 0);
    assert_int_equal(stream_len(f), 2);
    assert_int_equal(jn_store_checkpoint_get(f->store, "gh-1", &cursor), 0);
    assert_string_equal(cursor, "{\"since\":\"2026-11-25\"}");
    free(cursor);
    r = rt_cmd(f->check, "XRANGE %sevidence.raw - + COUNT 1", f->prefix);
    assert_int_equal(r->elements, 1);
    {
        redisReply *fields = r->element[0]->element[1];
        const char *want[] = {"id",
                              "id-a",
                              "organization_id",
                              "org-a",
                              "integration_id",
                              "gh-1",
                              "provider_type",
                              "github",
                              "resource_type",
                              "github.member",
                              "resource_id",
                              "alice",
                              "collected_at",
                              "2026-11-25T10:00:00.000Z",
                              "run_id",
                              "run-1",
                              "connector_version",
                              "1.0.0",
                              "checksum",
                              "00ff",
                              "data",
                              "{\"login\":\"octocat\"}"};
        assert_int_equal(fields->elements, 22);
        for (size_t i = 0; i < 22; i++)
            assert_string_equal(fields->element[i]->str, want[i]);
    }
    freeReplyObject(r);
    assert_int_equal(jn_store_run_evidence_count(f->store, "run-1", &n), 0);
    assert_int_equal(n, 2);
    /* the run's dedup set expires: it is needed while the run can be retried */
    assert_true(rt_cmd_int(f->check, "PTTL %sjn:evrun:run-1", f->prefix) > 0);
}

/* A retried attempt emits the same items again (same run, same ids): the
 * stream gets only what is new. */
static void test_retried_items_not_duplicated(void **state)
{
    fixture_t *f = *state;
    jn_evidence_t a = item("id-a", "gh-1", "run-1", "alice"),
                  b = item("id-b", "gh-1", "run-1", "bob"),
                  c = item("id-c", "gh-1", "run-1", "carol");
    int inserted = -1, round;

    for (round = 0; round < 2; round++) {
        assert_int_equal(jn_store_begin(f->store), 0);
        assert_int_equal(jn_store_evidence_put(f->store, &a, NULL), 0);
        assert_int_equal(jn_store_evidence_put(f->store, &b, NULL), 0);
        if (round == 1)
            assert_int_equal(jn_store_evidence_put(f->store, &c, NULL), 0);
        assert_int_equal(jn_store_commit(f->store), 0);
    }
    assert_int_equal(stream_len(f), 3);
    /* outside a transaction: written at once, and told whether it was new */
    assert_int_equal(jn_store_evidence_put(f->store, &a, &inserted), 0);
    assert_int_equal(inserted, 0);
    a.id = "id-d";
    assert_int_equal(jn_store_evidence_put(f->store, &a, &inserted), 0);
    assert_int_equal(inserted, 1);
    assert_int_equal(stream_len(f), 4);
}

static void test_rollback_writes_nothing(void **state)
{
    fixture_t *f = *state;
    jn_evidence_t a = item("id-a", "gh-1", "run-1", "alice");
    char *cursor = NULL;

    assert_int_equal(jn_store_begin(f->store), 0);
    assert_int_equal(jn_store_evidence_put(f->store, &a, NULL), 0);
    assert_int_equal(jn_store_checkpoint_set(f->store, "gh-1", "{\"page\":2}"), 0);
    assert_int_equal(jn_store_rollback(f->store), 0);
    assert_int_equal(stream_len(f), 0);
    assert_int_equal(jn_store_checkpoint_get(f->store, "gh-1", &cursor), 1);
    /* the next transaction starts empty */
    assert_int_equal(jn_store_begin(f->store), 0);
    assert_int_equal(jn_store_commit(f->store), 0);
    assert_int_equal(stream_len(f), 0);
}

/* A commit whose script fails half way (the stream key holds a string): Redis
 * keeps what a script wrote before its error, so the cursor is written last
 * and is not stored. */
static void test_failed_commit_stores_no_cursor(void **state)
{
    fixture_t *f = *state;
    jn_evidence_t a = item("id-a", "gh-1", "run-1", "alice");
    char *cursor = NULL;

    rt_cmd_int(f->check, "DEL %sevidence.raw", f->prefix);
    freeReplyObject(rt_cmd(f->check, "SET %sevidence.raw not-a-stream", f->prefix));
    assert_int_equal(jn_store_begin(f->store), 0);
    assert_int_equal(jn_store_evidence_put(f->store, &a, NULL), 0);
    assert_int_equal(jn_store_checkpoint_set(f->store, "gh-1", "{\"page\":3}"), 0);
    assert_int_equal(jn_store_commit(f->store), -1);
    assert_non_null(strstr(jn_store_errmsg(f->store), "WRONGTYPE"));
    assert_int_equal(jn_store_rollback(f->store), 0);
    assert_int_equal(jn_store_checkpoint_get(f->store, "gh-1", &cursor), 1);
    /* the item was not marked as added either: a retry writes it */
    rt_cmd_int(f->check, "DEL %sevidence.raw", f->prefix);
    assert_int_equal(jn_store_begin(f->store), 0);
    assert_int_equal(jn_store_evidence_put(f->store, &a, NULL), 0);
    assert_int_equal(jn_store_checkpoint_set(f->store, "gh-1", "{\"page\":3}"), 0);
    assert_int_equal(jn_store_commit(f->store), 0);
    assert_int_equal(stream_len(f), 1);
    assert_int_equal(jn_store_checkpoint_get(f->store, "gh-1", &cursor), 0);
    free(cursor);
}

/* Redis gone at commit: the commit fails with the reason and the caller rolls
 * back; the next call fails at once while the connection is backing off. */
static void test_commit_fails_when_redis_is_down(void **state)
{
    fixture_t *f = *state;
    rt_server_t srv = {0};
    jn_evidence_t a = item("id-a", "gh-9", "run-9", "alice");
    char url[128], *cursor = NULL;
    jn_store_t *s;

    jn_store_close(f->store);
    f->store = NULL;
    rt_server_start(&srv);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", srv.port);
    s = open_cluster_store(f, url);
    assert_int_equal(jn_store_begin(s), 0);
    assert_int_equal(jn_store_evidence_put(s, &a, NULL), 0);
    assert_int_equal(jn_store_checkpoint_set(s, "gh-9", "{\"page\":3}"), 0);
    rt_server_kill(&srv);
    assert_int_equal(jn_store_commit(s), -1);
    assert_non_null(strstr(jn_store_errmsg(s), "evidence.raw"));
    assert_non_null(strstr(jn_store_errmsg(s), "redis 127.0.0.1:"));
    assert_int_equal(jn_store_rollback(s), 0);
    assert_int_equal(jn_store_checkpoint_get(s, "gh-9", &cursor), -1);
    assert_non_null(strstr(jn_store_errmsg(s), "unavailable"));
    jn_store_close(s);
    rt_server_stop(&srv);
}

static jn_job_record_t record(const char *id, const char *integration, jn_job_status_t st,
                              int64_t created)
{
    jn_job_record_t r = {0};

    r.id = id;
    r.organization_id = "org-a";
    r.integration_id = integration;
    r.provider_type = "github";
    r.kind = "collect";
    r.status = st;
    r.created_ms = created;
    r.priority = "normal";
    r.trigger = "schedule";
    r.max_attempts = 3;
    r.added = r.changed = r.removed = -1;
    return r;
}

typedef struct {
    char ids[16][40];
    int n;
} ids_t;

static int collect_record(void *ud, const jn_job_record_t *r)
{
    ids_t *l = ud;

    if (l->n < 16)
        snprintf(l->ids[l->n++], 40, "%s", r->id);
    return 0;
}

static void test_job_records_shared(void **state)
{
    fixture_t *f = *state;
    jn_job_record_t r = record("job-1", "gh-1", JN_JOB_QUEUED, 1000), got;
    jn_job_filter_t filter = {0};
    char *strings = NULL;
    ids_t l = {0};

    assert_int_equal(jn_store_job_put(f->store, &r), 0);
    /* a worker already moved it on; the enqueuer's late "queued" does not undo that */
    r.status = JN_JOB_SUCCEEDED;
    r.attempts = 1;
    r.started_ms = 1100;
    r.finished_ms = 1200;
    r.items = 7;
    r.pages = 2;
    r.slot_id = "gh-1@1000";
    assert_int_equal(jn_store_job_put(f->store, &r), 0);
    r = record("job-1", "gh-1", JN_JOB_QUEUED, 1000);
    assert_int_equal(jn_store_job_put(f->store, &r), 0);
    assert_int_equal(jn_store_job_get(f->store, "job-1", &got, &strings), 0);
    assert_int_equal(got.status, JN_JOB_SUCCEEDED);
    assert_int_equal(got.items, 7);
    assert_int_equal(got.pages, 2);
    assert_int_equal(got.attempts, 1);
    assert_int_equal(got.max_attempts, 3);
    assert_int_equal(got.finished_ms, 1200);
    assert_string_equal(got.slot_id, "gh-1@1000");
    assert_string_equal(got.kind, "collect");
    assert_null(got.error);
    assert_null(got.baseline_job_id);
    assert_int_equal(got.added, -1);
    free(strings);
    assert_int_equal(jn_store_job_get(f->store, "job-none", &got, &strings), 1);

    /* newest first, by integration and status, with a limit */
    r = record("job-2", "gh-2", JN_JOB_FAILED, 2000);
    r.error = "HTTP 502";
    assert_int_equal(jn_store_job_put(f->store, &r), 0);
    r = record("job-3", "gh-1", JN_JOB_RUNNING, 3000);
    r.attempts = 1;
    assert_int_equal(jn_store_job_put(f->store, &r), 0);
    assert_int_equal(jn_store_job_each(f->store, NULL, collect_record, &l), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.ids[0], "job-3");
    assert_string_equal(l.ids[2], "job-1");
    l.n = 0;
    filter.integration_id = "gh-1";
    assert_int_equal(jn_store_job_each(f->store, &filter, collect_record, &l), 0);
    assert_int_equal(l.n, 2);
    l.n = 0;
    filter.integration_id = NULL;
    filter.status = "failed";
    assert_int_equal(jn_store_job_each(f->store, &filter, collect_record, &l), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.ids[0], "job-2");
    l.n = 0;
    filter.status = NULL;
    filter.limit = 2;
    assert_int_equal(jn_store_job_each(f->store, &filter, collect_record, &l), 0);
    assert_int_equal(l.n, 2);
    /* a record that expired leaves the listing */
    rt_cmd_int(f->check, "DEL %sjn:record:job-3", f->prefix);
    l.n = 0;
    filter.limit = 0;
    assert_int_equal(jn_store_job_each(f->store, &filter, collect_record, &l), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.ids[0], "job-2");
    /* change detection is computed in Redis too (test_store_redis_tenancy.c):
     * a first run without evidence has nothing added and no baseline */
    {
        jn_job_changes_t ch;
        assert_int_equal(jn_store_job_changes_compute(f->store, "job-1", "gh-1", 1, &ch), 0);
        assert_int_equal(ch.added, 0);
        assert_int_equal(ch.removed, 0);
        assert_string_equal(ch.baseline_job_id, "");
    }
}

static int count_item(void *ud, const jn_evidence_t *e)
{
    assert_non_null(e->id);
    assert_non_null(e->data);
    (*(int *)ud)++;
    return 0;
}

static void test_export_reads_the_stream(void **state)
{
    fixture_t *f = *state;
    jn_evidence_t a = item("id-a", "gh-1", "run-1", "alice"),
                  b = item("id-b", "gh-2", "run-2", "bob");
    jn_evidence_filter_t flt = {0};
    int64_t n = 0;
    int seen = 0;

    assert_int_equal(jn_store_begin(f->store), 0);
    assert_int_equal(jn_store_evidence_put(f->store, &a, NULL), 0);
    assert_int_equal(jn_store_evidence_put(f->store, &b, NULL), 0);
    assert_int_equal(jn_store_commit(f->store), 0);
    assert_int_equal(jn_store_evidence_count(f->store, NULL, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(jn_store_evidence_count(f->store, "gh-2", &n), 0);
    assert_int_equal(n, 1);
    flt.run_id = "run-1";
    assert_int_equal(jn_store_evidence_export(f->store, &flt, count_item, &seen), 0);
    assert_int_equal(seen, 1);
    seen = 0;
    flt.run_id = NULL;
    flt.stored_since_ms = 4102444800000LL; /* 2100: nothing stored since */
    assert_int_equal(jn_store_evidence_export(f->store, &flt, count_item, &seen), 0);
    assert_int_equal(seen, 0);
}

/* Integrations are shared: in Redis, not in the local store (the full
 * behaviour is in test_store_redis_tenancy.c). */
static void test_integrations_in_redis(void **state)
{
    fixture_t *f = *state;
    jn_integration_t it = {0}, got;
    char *strings = NULL;

    it.id = "gh-1";
    it.organization_id = "org-a";
    it.provider = "github";
    it.config_json = "{}";
    it.schedule = "1h";
    it.priority = "normal";
    it.enabled = 1;
    assert_int_equal(jn_store_integration_insert(f->store, &it), 0);
    assert_int_equal(jn_store_schema_version(f->store) >= 3, 1);
    jn_store_close(f->store);
    f->store = open_cluster_store(f, rt_fixture_url());
    assert_int_equal(jn_store_integration_get(f->store, "gh-1", &got, &strings), 0);
    assert_string_equal(got.organization_id, "org-a");
    free(strings);
    assert_int_equal(rt_cmd_int(f->check, "EXISTS %sjn:integ:gh-1", f->prefix), 1);
    /* the local store alone does not have it */
    {
        char err[512];
        jn_store_t *local = jn_store_open_sqlite(f->path, err, sizeof(err));
        assert_non_null(local);
        assert_int_equal(jn_store_integration_get(local, "gh-1", &got, &strings), 1);
        jn_store_close(local);
    }
}

static void test_attach_refusals(void **state)
{
    fixture_t *f = *state;
    char err[512] = "";
    jn_store_t *s;

    assert_int_equal(jn_store_attach_redis(f->store, rt_fixture_url(), NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "attached already"));
    s = jn_store_open_sqlite(f->path, err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(jn_store_attach_redis(s, "redis://127.0.0.1:notaport", NULL, err, sizeof(err)),
                     -1);
    assert_false(jn_store_is_redis(s));
    assert_int_equal(jn_store_begin(s), 0);
    assert_int_equal(jn_store_attach_redis(s, rt_fixture_url(), NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "inside a transaction"));
    assert_int_equal(jn_store_rollback(s), 0);
    jn_store_close(s);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_batch_and_cursor_committed_together),
        T(test_retried_items_not_duplicated),
        T(test_rollback_writes_nothing),
        T(test_failed_commit_stores_no_cursor),
        T(test_commit_fails_when_redis_is_down),
        T(test_job_records_shared),
        T(test_export_reads_the_stream),
        T(test_integrations_in_redis),
        T(test_attach_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
