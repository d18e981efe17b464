/* The counts /metrics exports of queued jobs and job records
 * (runtime/src/api_sampler.c), on a real SQLite store: taken by the
 * sampler's thread on a connection of its own, never on the loop; waited
 * for by the scrape while they are cheap (exact, at once); once one is
 * slow, a scrape serves the last one without waiting, until it is older
 * than the maximum age; the thread's first count runs from the start.
 * "Slow" is set by metrics_sample_sync_ms: 0 makes every count slow, a
 * minute none, so nothing here depends on timing. */
#include "api_sampler.h"
#include "junction/config.h"
#include "junction/queue.h"
#include "junction/store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../core/tests/test_tmpdir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    char dir[256], path[300];
    jn_config_t *cfg;
    jn_store_t *store, *bg_store; /* the loop's and the thread's connections */
    jn_queue_t *queue, *bg_queue;
    int n;
} fx_t;

static jn_queue_t *open_queue(jn_store_t *st)
{
    jn_queue_opts_t o = {0};
    char err[256];
    jn_queue_t *q = jn_queue_open_store(st, &o, err, sizeof(err));

    if (q == NULL)
        fail_msg("queue: %s", err);
    return q;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    char err[256];

    assert_non_null(f);
    tt_tmpdir(f->dir, sizeof(f->dir), "api-sampler");
    snprintf(f->path, sizeof(f->path), "%s/junction.db", f->dir);
    assert_non_null(f->store = jn_store_open_sqlite(f->path, err, sizeof(err)));
    assert_non_null(f->bg_store = jn_store_open_sqlite(f->path, err, sizeof(err)));
    f->queue = open_queue(f->store);
    f->bg_queue = open_queue(f->bg_store);
    assert_non_null(f->cfg = jn_config_create());
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;

    jn_queue_destroy(f->queue);
    jn_queue_destroy(f->bg_queue);
    jn_store_close(f->store);
    jn_store_close(f->bg_store);
    jn_config_destroy(f->cfg);
    tt_rmtree(f->dir);
    free(f);
    return 0;
}

static void set(fx_t *f, const char *key, const char *value)
{
    char err[256];

    if (jn_config_set(f->cfg, key, value, err, sizeof(err)) != 0)
        fail_msg("%s: %s", key, err);
}

static void enqueue(fx_t *f, int n)
{
    for (int i = 0; i < n; i++, f->n++) {
        jn_queue_enqueue_t e = {0};
        jn_queue_enqueued_t out;
        char key[32];

        snprintf(key, sizeof(key), "k-%d", f->n);
        e.idempotency_key = key;
        e.provider = "webhook:github";
        e.organization_id = "org-1";
        e.priority = JN_PRIORITY_HIGH;
        e.payload_json = "{}";
        assert_int_equal(jn_queue_enqueue(f->queue, &e, &out), 0);
        assert_int_equal(out.created, 1);
    }
}

static int64_t queued(const api_sample_t *s)
{
    for (size_t i = 0; i < s->nstats; i++)
        if (strcmp(s->stats[i].provider, "webhook:github") == 0)
            return s->stats[i].queued;
    return -1;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for the thread to finish the count it is taking (a bound on
 * liveness only: 30 s). */
static void until_idle(api_sampler_t *s)
{
    for (int i = 0; i < 3000 && !api_sampler_idle(s); i++)
        usleep(10000);
    assert_true(api_sampler_idle(s));
}

/* Cheap counts: each scrape waits for a count of the thread's, exact at
 * once. The scrapes pass no store and no queue: the loop never counts. */
static void test_cheap_counts_waited_for(void **state)
{
    fx_t *f = *state;
    api_sampler_t *s;
    const api_sample_t *x;
    uint64_t waited, bg;

    set(f, "metrics_sample_sync_ms", "60000");
    enqueue(f, 3);
    assert_non_null(s = api_sampler_new(f->cfg, f->bg_store, f->bg_queue));
    x = api_sampler_get(s, NULL, NULL, now_ms());
    assert_int_equal(queued(x), 3);
    assert_int_equal(x->background, 0);
    enqueue(f, 2);
    x = api_sampler_get(s, NULL, NULL, now_ms());
    assert_int_equal(queued(x), 5);
    assert_int_equal(x->background, 0);
    assert_string_equal(x->err, "");
    /* the thread's first count was either waited for or served first */
    api_sampler_counts(s, &waited, &bg);
    assert_int_equal(waited, 2);
    assert_true(bg <= 1);
    api_sampler_free(s);
}

/* Slow counts (a limit of 0: none comes in time): the scrape does not wait;
 * later scrapes serve the last count done, and the thread counts again only
 * once it is older than the maximum age. */
static void test_slow_counts_in_the_background(void **state)
{
    fx_t *f = *state;
    api_sampler_t *s;
    const api_sample_t *x;
    uint64_t waited, bg;
    int64_t taken;

    set(f, "metrics_sample_sync_ms", "0");
    set(f, "metrics_sample_max_age_ms", "100");
    enqueue(f, 4);
    assert_non_null(s = api_sampler_new(f->cfg, f->bg_store, f->bg_queue));
    until_idle(s); /* the first count, taken at the start */
    x = api_sampler_get(s, NULL, NULL, now_ms());
    assert_int_equal(queued(x), 4);
    assert_int_equal(x->background, 1);
    taken = x->taken_ms;
    assert_true(taken > 0);
    /* that scrape asked for a count and did not wait for it: the next one
     * serves it, and asks for none while it is younger than the maximum age */
    until_idle(s);
    enqueue(f, 6);
    x = api_sampler_get(s, NULL, NULL, taken);
    assert_int_equal(queued(x), 4);
    assert_true(api_sampler_idle(s));
    api_sampler_counts(s, &waited, &bg);
    assert_int_equal(waited, 0);
    assert_int_equal(bg, 2);
    /* older than the maximum age: the thread counts again */
    x = api_sampler_get(s, NULL, NULL, x->taken_ms + 100);
    assert_int_equal(queued(x), 4);
    until_idle(s);
    x = api_sampler_get(s, NULL, NULL, x->taken_ms);
    assert_int_equal(queued(x), 10);
    assert_int_equal(x->background, 1);
    api_sampler_counts(s, &waited, &bg);
    assert_int_equal(waited, 0);
    assert_int_equal(bg, 3);
    api_sampler_free(s);
}

/* Without a connection for the thread every count is on the loop, however
 * slow; a sampler freed while its first count may still run joins it. */
static void test_without_thread_and_free(void **state)
{
    fx_t *f = *state;
    api_sampler_t *s;
    const api_sample_t *x;
    uint64_t waited, bg;

    set(f, "metrics_sample_sync_ms", "0");
    set(f, "metrics_sample_max_age_ms", "100");
    enqueue(f, 1);
    assert_non_null(s = api_sampler_new(f->cfg, NULL, NULL));
    for (int i = 0; i < 3; i++) {
        x = api_sampler_get(s, f->store, f->queue, now_ms());
        assert_int_equal(queued(x), 1 + i);
        enqueue(f, 1);
    }
    api_sampler_counts(s, &waited, &bg);
    assert_int_equal(waited, 3);
    assert_int_equal(bg, 0);
    api_sampler_free(s);
    assert_non_null(s = api_sampler_new(f->cfg, f->bg_store, f->bg_queue));
    api_sampler_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cheap_counts_waited_for, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_counts_in_the_background, setup, teardown),
        cmocka_unit_test_setup_teardown(test_without_thread_and_free, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
