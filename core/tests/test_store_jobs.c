/* Store operations of schema version 3: integrations, job history, change
 * detection and evidence export, on a real SQLite file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "junction/clock.h"
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
    f->store = tt_store_open(f->dir, sizeof(f->dir), f->path, sizeof(f->path), "jn-store3");
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

static jn_integration_t integration(const char *id, const char *org)
{
    jn_integration_t it = {0};

    it.id = id;
    it.organization_id = org;
    it.provider = "github";
    it.config_json = "{\"organization\":\"acme\"}";
    it.schedule = "1h";
    it.priority = "normal";
    it.enabled = 1;
    return it;
}

/* ---- integrations ---- */

static void test_integration_insert_get(void **state)
{
    fixture_t *f = *state;
    jn_integration_t it = integration("gh-1", "org-a"), got;
    char *strings = NULL;

    it.token_env = "GH_TOKEN";
    it.auth_scheme = "token";
    it.jitter_ms = 60000;
    it.connector_version = "1.0.0";
    assert_int_equal(jn_store_integration_insert(f->store, &it), 0);
    assert_int_equal(jn_store_integration_insert(f->store, &it), 1); /* the id exists */
    assert_int_equal(jn_store_integration_get(f->store, "gh-1", &got, &strings), 0);
    assert_string_equal(got.organization_id, "org-a");
    assert_string_equal(got.provider, "github");
    assert_string_equal(got.token_env, "GH_TOKEN");
    assert_string_equal(got.auth_scheme, "token");
    assert_null(got.credential_id);
    assert_string_equal(got.config_json, "{\"organization\":\"acme\"}");
    assert_string_equal(got.schedule, "1h");
    assert_int_equal(got.jitter_ms, 60000);
    assert_string_equal(got.priority, "normal");
    assert_int_equal(got.enabled, 1);
    assert_string_equal(got.connector_version, "1.0.0");
    assert_true(got.created_ms > 0 && got.updated_ms >= got.created_ms);
    assert_int_equal(got.revision, 1);
    assert_int_equal(got.last_slot_ms, 0);
    free(strings);
    assert_int_equal(jn_store_integration_get(f->store, "nope", &got, &strings), 1);
    assert_null(strings);
}

static void test_integration_constraints(void **state)
{
    fixture_t *f = *state;
    jn_integration_t it = integration("gh-1", "org-a");

    it.token_env = "GH_TOKEN";
    it.credential_id = "abc";
    assert_int_equal(jn_store_integration_insert(f->store, &it), -1);
    assert_non_null(strstr(jn_store_errmsg(f->store), "CHECK constraint failed"));
    it = integration("gh-1", "org-a");
    it.priority = "urgent";
    assert_int_equal(jn_store_integration_insert(f->store, &it), -1);
    it = integration("gh-1", NULL);
    assert_int_equal(jn_store_integration_insert(f->store, &it), -1);
    assert_non_null(strstr(jn_store_errmsg(f->store), "a required field is NULL"));
}

static void test_integration_upsert_only_when_changed(void **state)
{
    fixture_t *f = *state;
    jn_integration_t it = integration("gh-1", "org-a"), got;
    char *strings;
    int changed = -1;

    assert_int_equal(jn_store_integration_upsert(f->store, &it, &changed), 0);
    assert_int_equal(changed, 1);
    assert_int_equal(jn_store_integration_upsert(f->store, &it, &changed), 0);
    assert_int_equal(changed, 0); /* the same again: no write, no new revision */
    assert_int_equal(jn_store_integration_set_enabled(f->store, "gh-1", 0), 0);
    /* enabled -1 keeps what the operator set */
    it.enabled = -1;
    assert_int_equal(jn_store_integration_upsert(f->store, &it, &changed), 0);
    assert_int_equal(changed, 0);
    it.schedule = "30m";
    assert_int_equal(jn_store_integration_upsert(f->store, &it, &changed), 0);
    assert_int_equal(changed, 1);
    assert_int_equal(jn_store_integration_get(f->store, "gh-1", &got, &strings), 0);
    assert_int_equal(got.enabled, 0);
    assert_string_equal(got.schedule, "30m");
    assert_int_equal(got.revision, 3);
    free(strings);
    it.enabled = 1;
    assert_int_equal(jn_store_integration_upsert(f->store, &it, &changed), 0);
    assert_int_equal(changed, 1);
}

typedef struct {
    char ids[8][32];
    int64_t revisions[8];
    int n;
} seen_t;

static int collect_integration(void *ud, const jn_integration_t *it)
{
    seen_t *s = ud;

    if (s->n < 8) {
        snprintf(s->ids[s->n], sizeof(s->ids[0]), "%s", it->id);
        s->revisions[s->n] = it->revision;
        s->n++;
    }
    return 0;
}

static void test_integration_each_and_revisions(void **state)
{
    fixture_t *f = *state;
    jn_integration_t a = integration("b-int", "org-a"), b = integration("a-int", "org-b"),
                     c = integration("c-int", "org-a");
    jn_integration_filter_t filter = {NULL, NULL, -1, 0, NULL};
    seen_t s = {0};

    assert_int_equal(jn_store_integration_insert(f->store, &a), 0);
    assert_int_equal(jn_store_integration_insert(f->store, &b), 0);
    assert_int_equal(jn_store_integration_insert(f->store, &c), 0);
    assert_int_equal(jn_store_integration_each(f->store, NULL, collect_integration, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.ids[0], "a-int"); /* id order */
    memset(&s, 0, sizeof(s));
    filter.organization_id = "org-a";
    assert_int_equal(jn_store_integration_each(f->store, &filter, collect_integration, &s), 0);
    assert_int_equal(s.n, 2);
    /* what changed since revision 3: only the one touched afterwards */
    assert_int_equal(jn_store_integration_set_enabled(f->store, "b-int", 0), 0);
    assert_int_equal(jn_store_integration_mark_slot(f->store, "c-int", 123), 0); /* no revision */
    memset(&s, 0, sizeof(s));
    filter.organization_id = NULL;
    filter.after_revision = 3;
    assert_int_equal(jn_store_integration_each(f->store, &filter, collect_integration, &s), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.ids[0], "b-int");
    assert_int_equal(s.revisions[0], 4);
    memset(&s, 0, sizeof(s));
    filter.after_revision = 0;
    filter.enabled = 1;
    assert_int_equal(jn_store_integration_each(f->store, &filter, collect_integration, &s), 0);
    assert_int_equal(s.n, 2);
}

static void test_integration_mark_slot_and_delete(void **state)
{
    fixture_t *f = *state;
    jn_integration_t it = integration("gh-1", "org-a"), got;
    char *strings, *cursor = NULL;

    assert_int_equal(jn_store_integration_insert(f->store, &it), 0);
    assert_int_equal(jn_store_integration_mark_slot(f->store, "gh-1", 2000), 0);
    assert_int_equal(jn_store_integration_mark_slot(f->store, "gh-1", 1000), 0); /* only grows */
    assert_int_equal(jn_store_integration_get(f->store, "gh-1", &got, &strings), 0);
    assert_int_equal(got.last_slot_ms, 2000);
    assert_int_equal(got.revision, 1);
    free(strings);
    assert_int_equal(jn_store_integration_mark_slot(f->store, "nope", 1), 1);
    assert_int_equal(jn_store_checkpoint_set(f->store, "gh-1", "{\"a\":1}"), 0);
    assert_int_equal(jn_store_integration_delete(f->store, "gh-1"), 0);
    assert_int_equal(jn_store_integration_get(f->store, "gh-1", &got, &strings), 1);
    assert_int_equal(jn_store_checkpoint_get(f->store, "gh-1", &cursor), 1);
    assert_int_equal(jn_store_integration_delete(f->store, "gh-1"), 1);
    assert_int_equal(jn_store_integration_set_enabled(f->store, "gh-1", 1), 1);
}

/* ---- job records ---- */

static void put_job(jn_store_t *s, const char *id, const char *integration, jn_job_status_t st,
                    int64_t created, int64_t finished)
{
    jn_job_record_t r = {0};

    r.id = id;
    r.organization_id = "org-a";
    r.integration_id = integration;
    r.provider_type = "github";
    r.kind = "collect";
    r.status = st;
    r.created_ms = created;
    r.finished_ms = finished;
    r.added = r.changed = r.removed = -1;
    assert_int_equal(jn_store_job_put(s, &r), 0);
}

static void test_job_record_v3_fields(void **state)
{
    fixture_t *f = *state;
    jn_job_record_t r = {0}, got;
    char *strings;

    r.id = "job-1";
    r.integration_id = "gh-1";
    r.status = JN_JOB_QUEUED;
    r.attempts = 2;
    r.max_attempts = 3;
    r.priority = "high";
    r.trigger = "manual";
    r.slot_id = "gh-1@2026-03-10T10:00:00.000Z";
    r.retry_at_ms = 12345;
    r.added = 4;
    r.changed = 5;
    r.removed = 6;
    r.baseline_job_id = "job-0";
    r.error = "HTTP 502";
    assert_int_equal(jn_store_job_put(f->store, &r), 0);
    assert_int_equal(jn_store_job_get(f->store, "job-1", &got, &strings), 0);
    assert_int_equal(got.status, JN_JOB_QUEUED);
    assert_int_equal(got.attempts, 2);
    assert_int_equal(got.max_attempts, 3);
    assert_string_equal(got.priority, "high");
    assert_string_equal(got.trigger, "manual");
    assert_string_equal(got.slot_id, "gh-1@2026-03-10T10:00:00.000Z");
    assert_int_equal(got.retry_at_ms, 12345);
    assert_int_equal(got.added, 4);
    assert_int_equal(got.changed, 5);
    assert_int_equal(got.removed, 6);
    assert_string_equal(got.baseline_job_id, "job-0");
    assert_string_equal(got.error, "HTTP 502");
    free(strings);
}

typedef struct {
    char ids[8][32];
    int n;
} ids_t;

static int collect_job(void *ud, const jn_job_record_t *r)
{
    ids_t *s = ud;

    if (s->n < 8)
        snprintf(s->ids[s->n++], sizeof(s->ids[0]), "%s", r->id);
    return 0;
}

static void test_job_each_filters(void **state)
{
    fixture_t *f = *state;
    jn_job_filter_t filter = {0};
    ids_t s = {0};

    put_job(f->store, "j1", "gh-1", JN_JOB_SUCCEEDED, 100, 150);
    put_job(f->store, "j2", "gh-2", JN_JOB_FAILED, 200, 250);
    put_job(f->store, "j3", "gh-1", JN_JOB_FAILED, 300, 350);
    put_job(f->store, "j4", "gh-1", JN_JOB_RUNNING, 400, 0);
    assert_int_equal(jn_store_job_each(f->store, NULL, collect_job, &s), 0);
    assert_int_equal(s.n, 4);
    assert_string_equal(s.ids[0], "j4"); /* newest first */
    assert_string_equal(s.ids[3], "j1");
    memset(&s, 0, sizeof(s));
    filter.integration_id = "gh-1";
    filter.status = "failed";
    assert_int_equal(jn_store_job_each(f->store, &filter, collect_job, &s), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.ids[0], "j3");
    memset(&s, 0, sizeof(s));
    filter.status = NULL;
    filter.limit = 2;
    assert_int_equal(jn_store_job_each(f->store, &filter, collect_job, &s), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.ids[1], "j3");
}

/* ---- change detection ---- */

static void put_item(jn_store_t *s, const char *run, const char *rid, const char *checksum)
{
    char id[96];
    jn_evidence_t e = {0};
    int inserted;

    snprintf(id, sizeof(id), "%s/%s", run, rid);
    e.id = id;
    e.organization_id = "org-a";
    e.integration_id = "gh-1";
    e.provider_type = "github";
    e.resource_type = "github.member";
    e.resource_id = rid;
    e.run_id = run;
    e.checksum = checksum;
    e.data = "{}";
    assert_int_equal(jn_store_evidence_put(s, &e, &inserted), 0);
    assert_int_equal(inserted, 1);
}

typedef struct {
    char lines[16][96];
    int n;
} changes_t;

static int collect_change(void *ud, const jn_job_change_t *c)
{
    changes_t *s = ud;

    if (s->n < 16)
        snprintf(s->lines[s->n++], sizeof(s->lines[0]), "%s %s %s", c->change, c->resource_type,
                 c->resource_id);
    return 0;
}

static void test_changes_between_runs(void **state)
{
    fixture_t *f = *state;
    jn_job_changes_t ch;
    jn_job_record_t got;
    changes_t list = {0};
    char *strings;

    /* run 1: a, b, c; succeeded, no baseline: all added, none listed */
    put_job(f->store, "run-1", "gh-1", JN_JOB_SUCCEEDED, 100, 150);
    put_item(f->store, "run-1", "a", "1");
    put_item(f->store, "run-1", "b", "1");
    put_item(f->store, "run-1", "c", "1");
    assert_int_equal(jn_store_job_changes_compute(f->store, "run-1", "gh-1", 1, &ch), 0);
    assert_int_equal(ch.added, 3);
    assert_int_equal(ch.changed, 0);
    assert_int_equal(ch.removed, 0);
    assert_string_equal(ch.baseline_job_id, "");
    assert_int_equal(jn_store_job_changes_each(f->store, "run-1", NULL, 0, collect_change, &list),
                     0);
    assert_int_equal(list.n, 0);

    /* run 2 (partial): a same, b changed, d new; c is not reported removed */
    put_job(f->store, "run-2", "gh-1", JN_JOB_PARTIAL, 200, 250);
    put_item(f->store, "run-2", "a", "1");
    put_item(f->store, "run-2", "b", "2");
    put_item(f->store, "run-2", "d", "1");
    assert_int_equal(jn_store_job_changes_compute(f->store, "run-2", "gh-1", 0, &ch), 0);
    assert_string_equal(ch.baseline_job_id, "run-1");
    assert_int_equal(ch.added, 1);
    assert_int_equal(ch.changed, 1);
    assert_int_equal(ch.removed, 0);

    /* run 3 (complete): a same, b changed since run 1, e new, c removed */
    put_job(f->store, "run-3", "gh-1", JN_JOB_SUCCEEDED, 300, 350);
    put_item(f->store, "run-3", "a", "1");
    put_item(f->store, "run-3", "b", "2");
    put_item(f->store, "run-3", "e", "1");
    assert_int_equal(jn_store_job_changes_compute(f->store, "run-3", "gh-1", 1, &ch), 0);
    assert_string_equal(ch.baseline_job_id, "run-1"); /* the partial run is no baseline */
    assert_int_equal(ch.added, 1);
    assert_int_equal(ch.changed, 1);
    assert_int_equal(ch.removed, 1);
    memset(&list, 0, sizeof(list));
    assert_int_equal(jn_store_job_changes_each(f->store, "run-3", NULL, 0, collect_change, &list),
                     0);
    assert_int_equal(list.n, 3);
    assert_string_equal(list.lines[0], "added github.member e");
    assert_string_equal(list.lines[1], "changed github.member b");
    assert_string_equal(list.lines[2], "removed github.member c");
    memset(&list, 0, sizeof(list));
    assert_int_equal(
        jn_store_job_changes_each(f->store, "run-3", "removed", 0, collect_change, &list), 0);
    assert_int_equal(list.n, 1);
    /* the counts are on the job record too */
    assert_int_equal(jn_store_job_get(f->store, "run-3", &got, &strings), 0);
    assert_int_equal(got.added, 1);
    assert_int_equal(got.changed, 1);
    assert_int_equal(got.removed, 1);
    assert_string_equal(got.baseline_job_id, "run-1");
    free(strings);
    /* computing again replaces, never doubles */
    assert_int_equal(jn_store_job_changes_compute(f->store, "run-3", "gh-1", 1, &ch), 0);
    memset(&list, 0, sizeof(list));
    assert_int_equal(jn_store_job_changes_each(f->store, "run-3", NULL, 0, collect_change, &list),
                     0);
    assert_int_equal(list.n, 3);
}

/* ---- evidence export ---- */

static int count_rows(void *ud, const jn_evidence_t *e)
{
    (void)e;
    (*(int *)ud)++;
    return 0;
}

static void test_evidence_export_filters(void **state)
{
    fixture_t *f = *state;
    jn_evidence_filter_t filter = {0};
    int64_t before = jn_now_ms(), n;
    int rows = 0;

    put_item(f->store, "run-1", "a", "1");
    put_item(f->store, "run-1", "b", "1");
    put_item(f->store, "run-2", "a", "1");
    assert_int_equal(jn_store_evidence_export(f->store, NULL, count_rows, &rows), 0);
    assert_int_equal(rows, 3);
    rows = 0;
    filter.run_id = "run-1";
    assert_int_equal(jn_store_evidence_export(f->store, &filter, count_rows, &rows), 0);
    assert_int_equal(rows, 2);
    rows = 0;
    filter.run_id = NULL;
    filter.integration_id = "gh-1";
    filter.stored_since_ms = before;
    assert_int_equal(jn_store_evidence_export(f->store, &filter, count_rows, &rows), 0);
    assert_int_equal(rows, 3);
    rows = 0;
    filter.stored_since_ms = before + 3600 * 1000;
    assert_int_equal(jn_store_evidence_export(f->store, &filter, count_rows, &rows), 0);
    assert_int_equal(rows, 0);
    rows = 0;
    filter.stored_since_ms = 0;
    filter.integration_id = "other";
    assert_int_equal(jn_store_evidence_export(f->store, &filter, count_rows, &rows), 0);
    assert_int_equal(rows, 0);
    assert_int_equal(jn_store_run_evidence_count(f->store, "run-1", &n), 0);
    assert_int_equal(n, 2);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_integration_insert_get),
        T(test_integration_constraints),
        T(test_integration_upsert_only_when_changed),
        T(test_integration_each_and_revisions),
        T(test_integration_mark_slot_and_delete),
        T(test_job_record_v3_fields),
        T(test_job_each_filters),
        T(test_changes_between_runs),
        T(test_evidence_export_filters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
