#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "junction/scheduler.h"

#define SEC 1000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)

/* A fixed, driven clock: 2026-03-10 10:00:00 UTC. */
#define T0 1773136800000LL

static jn_schedule_t sched(const char *text, int64_t jitter_ms)
{
    jn_schedule_t s;
    char err[256] = "";

    if (jn_schedule_parse(text, &s, err, sizeof(err)) != 0)
        fail_msg("'%s': %s", text, err);
    if (jn_schedule_set_jitter(&s, jitter_ms, err, sizeof(err)) != 0)
        fail_msg("jitter: %s", err);
    return s;
}

/* Every fire a tick reported. */
typedef struct {
    char id[32];
    int64_t slot_ms, fire_ms, now_ms;
    jn_fire_kind_t kind;
} fire_t;

typedef struct {
    fire_t *fires;
    size_t n, cap;
    int64_t now;
    const char *drop_id; /* returned 1 for this id */
} log_t;

static int record(void *ud, const jn_scheduler_fire_t *f)
{
    log_t *l = ud;

    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->fires = realloc(l->fires, l->cap * sizeof(*l->fires));
        assert_non_null(l->fires);
    }
    snprintf(l->fires[l->n].id, sizeof(l->fires[l->n].id), "%s", f->id);
    l->fires[l->n].slot_ms = f->slot_ms;
    l->fires[l->n].fire_ms = f->fire_ms;
    l->fires[l->n].kind = f->kind;
    l->fires[l->n].now_ms = l->now;
    l->n++;
    return l->drop_id != NULL && strcmp(l->drop_id, f->id) == 0;
}

/* Ticks every `step` from `from` to `to` (inclusive). */
static void run(jn_scheduler_t *s, log_t *l, int64_t from, int64_t to, int64_t step)
{
    for (l->now = from; l->now <= to; l->now += step)
        jn_scheduler_tick(s, l->now, record, l);
}

static size_t count_for(const log_t *l, const char *id, jn_fire_kind_t kind)
{
    size_t i, n = 0;

    for (i = 0; i < l->n; i++)
        n += strcmp(l->fires[i].id, id) == 0 && l->fires[i].kind == kind;
    return n;
}

/* ---- durations and schedules ---- */

static void test_durations(void **state)
{
    int64_t ms;
    char err[256], buf[32];

    (void)state;
    assert_int_equal(jn_duration_parse("90s", &ms, err, sizeof(err)), 0);
    assert_int_equal(ms, 90 * SEC);
    assert_string_equal(jn_duration_format(ms, buf, sizeof(buf)), "1m30s");
    assert_int_equal(jn_duration_parse("1h30m", &ms, err, sizeof(err)), 0);
    assert_int_equal(ms, 90 * MIN);
    assert_int_equal(jn_duration_parse("1d", &ms, err, sizeof(err)), 0);
    assert_string_equal(jn_duration_format(ms, buf, sizeof(buf)), "1d");
    assert_string_equal(jn_duration_format(0, buf, sizeof(buf)), "0s");
    assert_string_equal(jn_duration_format(26 * HOUR + 5 * SEC, buf, sizeof(buf)), "1d2h5s");
    assert_int_equal(jn_duration_parse("15", &ms, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "the number 15 has no unit (d, h, m or s)"));
    assert_int_equal(jn_duration_parse("15x", &ms, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "at column 3: unknown unit 'x'"));
    assert_int_equal(jn_duration_parse("-5m", &ms, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "at column 1: expected a number"));
    assert_int_equal(jn_duration_parse("", &ms, err, sizeof(err)), -1);
    assert_int_equal(jn_duration_parse("99999999999999d", &ms, err, sizeof(err)), -1);
}

static void test_schedule_parse(void **state)
{
    jn_schedule_t s;
    char err[256], buf[64];

    (void)state;
    assert_int_equal(jn_schedule_parse("15m", &s, err, sizeof(err)), 0);
    assert_int_equal(s.kind, JN_SCHEDULE_INTERVAL);
    assert_int_equal(s.u.every_ms, 15 * MIN);
    assert_int_equal(jn_schedule_parse("*/5 * * * *", &s, err, sizeof(err)), 0);
    assert_int_equal(s.kind, JN_SCHEDULE_CRON);
    assert_int_equal(jn_schedule_parse("@hourly", &s, err, sizeof(err)), 0);
    assert_int_equal(s.kind, JN_SCHEDULE_CRON);

    assert_int_equal(jn_schedule_parse("0 0 32 * *", &s, err, sizeof(err)), -1);
    assert_string_equal(err, "invalid schedule '0 0 32 * *': field 3 (day of month) at column 5:"
                             " 32 is out of range 1-31");
    assert_int_equal(jn_schedule_parse("0s", &s, err, sizeof(err)), -1);
    assert_string_equal(err, "invalid schedule '0s': an interval must be from 1s to 366d");
    assert_int_equal(jn_schedule_parse("367d", &s, err, sizeof(err)), -1);
    assert_int_equal(jn_schedule_parse("soon", &s, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "invalid schedule 'soon'"));
    assert_int_equal(jn_schedule_parse("", &s, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "empty schedule"));

    assert_int_equal(jn_schedule_canonical("90m", buf, sizeof(buf), err, sizeof(err)), 0);
    assert_string_equal(buf, "1h30m");
    assert_int_equal(
        jn_schedule_canonical("  */5   *  * * MON ", buf, sizeof(buf), err, sizeof(err)), 0);
    assert_string_equal(buf, "*/5 * * * mon");

    s = sched("15m", 0);
    assert_int_equal(jn_schedule_set_jitter(&s, 15 * MIN, err, sizeof(err)), -1);
    assert_string_equal(err, "the jitter (15m) must be shorter than the interval (15m)");
    assert_int_equal(jn_schedule_set_jitter(&s, -1, err, sizeof(err)), -1);
    assert_int_equal(jn_schedule_set_jitter(&s, 14 * MIN, err, sizeof(err)), 0);
}

static void test_interval_slots_and_phase(void **state)
{
    jn_schedule_t s = sched("15m", 0);
    int64_t a, b, phase_a, phase_b;
    int differ = 0, i;
    char id[16];

    (void)state;
    a = jn_schedule_slot_at_or_before(&s, "gh-1", T0);
    assert_true(a <= T0 && a > T0 - 15 * MIN);
    assert_int_equal(a % SEC, 0);
    assert_int_equal(jn_schedule_slot_after(&s, "gh-1", a), a + 15 * MIN);
    assert_int_equal(jn_schedule_slot_after(&s, "gh-1", a - 1), a);
    assert_int_equal(jn_schedule_slot_at_or_before(&s, "gh-1", a + 15 * MIN - 1), a);
    /* the phase depends on the id only: the same in every process */
    phase_a = a % (15 * MIN);
    assert_int_equal(jn_schedule_slot_at_or_before(&s, "gh-1", T0 + 7 * HOUR) % (15 * MIN),
                     phase_a);
    for (i = 0; i < 20; i++) {
        snprintf(id, sizeof(id), "int-%d", i);
        b = jn_schedule_slot_at_or_before(&s, id, T0);
        phase_b = b % (15 * MIN);
        differ += phase_b != phase_a;
    }
    assert_true(differ >= 18);
}

static void test_jitter_deterministic(void **state)
{
    jn_schedule_t s = sched("1h", 10 * MIN), none = sched("1h", 0);
    int64_t slot = jn_schedule_slot_after(&s, "gh-1", T0), f, g;
    int distinct = 0, i;

    (void)state;
    assert_int_equal(jn_schedule_fire_ms(&none, "gh-1", slot), slot);
    f = jn_schedule_fire_ms(&s, "gh-1", slot);
    assert_true(f >= slot && f <= slot + 10 * MIN);
    assert_int_equal(jn_schedule_fire_ms(&s, "gh-1", slot), f);
    assert_int_equal(jn_schedule_hash("gh-1", slot), jn_schedule_hash("gh-1", slot));
    for (i = 1; i <= 24; i++) {
        g = jn_schedule_fire_ms(&s, "gh-1", slot + i * HOUR) - (slot + i * HOUR);
        assert_true(g >= 0 && g <= 10 * MIN);
        distinct += g != f - slot;
    }
    assert_true(distinct >= 20); /* a different offset per slot */
}

static void test_slot_id(void **state)
{
    char buf[64];

    (void)state;
    assert_int_equal(jn_schedule_slot_id("gh-1", T0 + 15 * MIN, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "gh-1@2026-03-10T10:15:00.000Z");
    assert_int_equal(jn_schedule_slot_id("gh-1", T0, buf, 10), -1);
}

/* ---- the scheduler ---- */

static void test_due_order_and_timeliness(void **state)
{
    jn_scheduler_t *s = jn_scheduler_create(NULL);
    jn_schedule_t a = sched("15m", 0), b = sched("10m", 2 * MIN), c = sched("*/20 * * * *", 0);
    log_t l = {0};
    size_t i;

    (void)state;
    assert_non_null(s);
    /* each has run its latest slot already: nothing to catch up */
    assert_int_equal(jn_scheduler_set(s, "a", &a, jn_schedule_slot_at_or_before(&a, "a", T0)), 0);
    assert_int_equal(jn_scheduler_set(s, "b", &b, jn_schedule_slot_at_or_before(&b, "b", T0)), 0);
    assert_int_equal(jn_scheduler_set(s, "c", &c, jn_schedule_slot_at_or_before(&c, "c", T0)), 0);
    assert_int_equal(jn_scheduler_count(s), 3);
    assert_int_equal(jn_scheduler_next_fire(s), INT64_MIN); /* waiting to be planned */
    run(s, &l, T0 + SEC, T0 + HOUR, SEC);
    assert_int_equal(count_for(&l, "a", JN_FIRE_SCHEDULED), 4);
    assert_int_equal(count_for(&l, "b", JN_FIRE_SCHEDULED), 6);
    assert_int_equal(count_for(&l, "c", JN_FIRE_SCHEDULED), 3);
    assert_int_equal(count_for(&l, "a", JN_FIRE_CATCH_UP) + count_for(&l, "b", JN_FIRE_CATCH_UP) +
                         count_for(&l, "c", JN_FIRE_CATCH_UP),
                     0);
    for (i = 0; i < l.n; i++) {
        const fire_t *f = &l.fires[i];
        jn_schedule_t *sc = f->id[0] == 'a' ? &a : f->id[0] == 'b' ? &b : &c;
        /* fired in fire-time order, within the tick after its time */
        if (i > 0)
            assert_true(f->fire_ms >= l.fires[i - 1].fire_ms);
        assert_int_equal(f->fire_ms, jn_schedule_fire_ms(sc, f->id, f->slot_ms));
        assert_true(f->now_ms >= f->fire_ms && f->now_ms < f->fire_ms + SEC);
        if (f->id[0] == 'c')
            assert_int_equal(f->slot_ms % (20 * MIN), 0);
    }
    assert_true(jn_scheduler_next_fire(s) > T0 + HOUR);
    free(l.fires);
    jn_scheduler_destroy(s);
}

/* Two processes, or one restarted, fire the same slots at the same times. */
static void test_stable_across_restarts(void **state)
{
    jn_schedule_t sc = sched("5m", 4 * MIN);
    jn_scheduler_t *one = jn_scheduler_create(NULL), *two;
    log_t l1 = {0}, l2 = {0};
    int64_t last = jn_schedule_slot_at_or_before(&sc, "x", T0), mid = T0 + 37 * MIN;
    size_t i;
    char id[16];

    (void)state;
    for (i = 0; i < 50; i++) {
        snprintf(id, sizeof(id), "int-%zu", i);
        jn_scheduler_set(one, id, &sc, jn_schedule_slot_at_or_before(&sc, id, T0));
    }
    run(one, &l1, T0, T0 + HOUR, SEC);
    /* "restart" half-way, handing over each integration's last enqueued slot */
    two = jn_scheduler_create(NULL);
    for (i = 0; i < 50; i++) {
        snprintf(id, sizeof(id), "int-%zu", i);
        last = jn_schedule_slot_at_or_before(&sc, id, T0);
        for (size_t k = 0; k < l1.n; k++)
            if (strcmp(l1.fires[k].id, id) == 0 && l1.fires[k].now_ms <= mid)
                last = l1.fires[k].slot_ms;
        jn_scheduler_set(two, id, &sc, last);
    }
    run(two, &l2, mid + SEC, T0 + HOUR, SEC);
    /* the second one fires exactly what the first fired after the restart point */
    {
        size_t k = 0;
        for (i = 0; i < l1.n; i++) {
            if (l1.fires[i].now_ms <= mid)
                continue;
            assert_true(k < l2.n);
            assert_string_equal(l1.fires[i].id, l2.fires[k].id);
            assert_int_equal(l1.fires[i].slot_ms, l2.fires[k].slot_ms);
            assert_int_equal(l1.fires[i].fire_ms, l2.fires[k].fire_ms);
            assert_int_equal(l2.fires[k].kind, JN_FIRE_SCHEDULED);
            k++;
        }
        assert_int_equal(k, l2.n);
    }
    free(l1.fires);
    free(l2.fires);
    jn_scheduler_destroy(one);
    jn_scheduler_destroy(two);
}

/* After three hours of downtime: one catch-up per integration, spread out. */
static void test_catch_up_spread(void **state)
{
    jn_scheduler_opts_t o = {.catch_up_window_ms = 10 * MIN};
    jn_scheduler_t *s = jn_scheduler_create(&o);
    jn_schedule_t sc = sched("1h", 0);
    log_t l = {0};
    int per_second[200] = {0}, busiest = 0, seconds_used = 0;
    size_t i;
    char id[16];
    int64_t last, latest;

    (void)state;
    for (i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "int-%zu", i);
        last = jn_schedule_slot_at_or_before(&sc, id, T0 - 3 * HOUR);
        jn_scheduler_set(s, id, &sc, last);
    }
    run(s, &l, T0, T0 + 3 * HOUR, SEC);
    for (i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "int-%zu", i);
        assert_int_equal(count_for(&l, id, JN_FIRE_CATCH_UP) + count_for(&l, id, JN_FIRE_SCHEDULED),
                         3 + (count_for(&l, id, JN_FIRE_CATCH_UP) ? 1 : 0));
    }
    for (i = 0; i < l.n; i++) {
        const fire_t *f = &l.fires[i];
        if (f->kind != JN_FIRE_CATCH_UP)
            continue;
        /* the latest missed slot, never an older one */
        latest = jn_schedule_slot_at_or_before(&sc, f->id, T0);
        assert_int_equal(f->slot_ms, latest);
        /* window: min(10 min, 1000 missed x 100 ms) = 100 s */
        assert_true(f->fire_ms >= T0 && f->fire_ms <= T0 + 100 * SEC);
        per_second[(f->fire_ms - T0) / SEC]++;
    }
    for (i = 0; i < 200; i++) {
        busiest = per_second[i] > busiest ? per_second[i] : busiest;
        seconds_used += per_second[i] > 0;
    }
    assert_true(seconds_used > 80);
    assert_true(busiest < 40);
    free(l.fires);
    jn_scheduler_destroy(s);
}

/* A catch-up that would fire after the next regular slot is skipped. */
static void test_catch_up_yields_to_next_slot(void **state)
{
    jn_scheduler_opts_t o = {.catch_up_window_ms = 10 * MIN, .catch_up_spacing_ms = 10 * MIN};
    jn_scheduler_t *s = jn_scheduler_create(&o);
    jn_schedule_t sc = sched("1m", 0);
    log_t l = {0};
    size_t i, regular_first = 0;
    char id[16];

    (void)state;
    for (i = 0; i < 50; i++) {
        snprintf(id, sizeof(id), "int-%zu", i);
        jn_scheduler_set(s, id, &sc, jn_schedule_slot_at_or_before(&sc, id, T0 - HOUR));
    }
    run(s, &l, T0, T0 + 10 * MIN, SEC);
    for (i = 0; i < 50; i++) {
        size_t k, first = SIZE_MAX;
        snprintf(id, sizeof(id), "int-%zu", i);
        for (k = 0; k < l.n && first == SIZE_MAX; k++)
            if (strcmp(l.fires[k].id, id) == 0)
                first = k;
        assert_true(first != SIZE_MAX);
        if (l.fires[first].kind == JN_FIRE_SCHEDULED)
            regular_first++;
        else /* a catch-up only ever runs before the first regular slot */
            assert_true(l.fires[first].fire_ms <
                        jn_schedule_slot_after(&sc, id, l.fires[first].slot_ms));
        assert_true(count_for(&l, id, JN_FIRE_CATCH_UP) <= 1);
    }
    assert_true(regular_first > 30);
    free(l.fires);
    jn_scheduler_destroy(s);
}

static void test_never_run_fires_promptly(void **state)
{
    jn_scheduler_opts_t o = {.catch_up_window_ms = 10 * MIN};
    jn_scheduler_t *s = jn_scheduler_create(&o);
    jn_schedule_t daily = sched("0 2 * * *", 0);
    jn_scheduler_fire_t peek;
    log_t l = {0};

    (void)state;
    jn_scheduler_set(s, "new", &daily, 0);
    jn_scheduler_plan(s, T0);
    assert_int_equal(jn_scheduler_peek(s, "new", &peek), 0);
    assert_int_equal(peek.kind, JN_FIRE_CATCH_UP);
    assert_true(peek.fire_ms >= T0 && peek.fire_ms <= T0 + 100);
    run(s, &l, T0, T0 + SEC, 100);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.fires[0].slot_ms, T0 - 8 * HOUR); /* 02:00 today */
    /* then the regular slot: 02:00 tomorrow */
    assert_int_equal(jn_scheduler_peek(s, "new", &peek), 0);
    assert_int_equal(peek.kind, JN_FIRE_SCHEDULED);
    assert_int_equal(peek.slot_ms, T0 + 16 * HOUR);
    free(l.fires);
    jn_scheduler_destroy(s);
}

/* A new integration added while its latest slot's jitter is still running
 * runs once now; that slot does not fire again when its jitter ends. */
static void test_never_run_within_jitter_runs_once(void **state)
{
    jn_scheduler_opts_t o = {.catch_up_window_ms = 10 * MIN};
    jn_schedule_t sc = sched("1h", 20 * MIN);
    char id[16];
    int i, tried = 0;

    (void)state;
    for (i = 0; i < 200 && tried < 10; i++) {
        jn_scheduler_t *s = jn_scheduler_create(&o);
        log_t l = {0};
        int64_t slot, fire, now, next;

        snprintf(id, sizeof(id), "int-%d", i);
        slot = jn_schedule_slot_at_or_before(&sc, id, T0);
        fire = jn_schedule_fire_ms(&sc, id, slot);
        if (fire - slot < 2 * SEC) {
            jn_scheduler_destroy(s);
            continue;
        }
        tried++;
        now = slot + (fire - slot) / 2; /* the slot started, its jitter runs */
        next = jn_schedule_slot_after(&sc, id, slot);
        jn_scheduler_set(s, id, &sc, 0);
        run(s, &l, now, jn_schedule_fire_ms(&sc, id, next) - SEC, SEC);
        assert_int_equal(l.n, 1);
        assert_int_equal(l.fires[0].kind, JN_FIRE_CATCH_UP);
        assert_int_equal(l.fires[0].slot_ms, slot);
        assert_true(l.fires[0].fire_ms <= now + SEC);
        /* the next run is the following slot, at its own time */
        run(s, &l, jn_schedule_fire_ms(&sc, id, next), jn_schedule_fire_ms(&sc, id, next), SEC);
        assert_int_equal(l.n, 2);
        assert_int_equal(l.fires[1].slot_ms, next);
        free(l.fires);
        jn_scheduler_destroy(s);
    }
    assert_int_equal(tried, 10);
}

/* A stalled process (ticks stop for two hours) makes up one run, not eight. */
static void test_stall_counts_as_missed(void **state)
{
    jn_scheduler_t *s = jn_scheduler_create(NULL);
    jn_schedule_t sc = sched("15m", 0);
    log_t l = {0};

    (void)state;
    jn_scheduler_set(s, "a", &sc, jn_schedule_slot_at_or_before(&sc, "a", T0));
    run(s, &l, T0, T0 + 20 * MIN, SEC);
    assert_true(l.n >= 1);
    l.n = 0;
    run(s, &l, T0 + 2 * HOUR + 20 * MIN, T0 + 2 * HOUR + 20 * MIN, SEC);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.fires[0].kind, JN_FIRE_CATCH_UP);
    assert_int_equal(l.fires[0].slot_ms,
                     jn_schedule_slot_at_or_before(&sc, "a", T0 + 2 * HOUR + 20 * MIN));
    free(l.fires);
    jn_scheduler_destroy(s);
}

static void test_replace_remove_and_drop(void **state)
{
    jn_scheduler_t *s = jn_scheduler_create(NULL);
    jn_schedule_t a = sched("15m", 0), b = sched("1h", 0);
    jn_scheduler_fire_t p1, p2;
    log_t l = {0};

    (void)state;
    jn_scheduler_set(s, "x", &a, jn_schedule_slot_at_or_before(&a, "x", T0));
    jn_scheduler_set(s, "y", &a, jn_schedule_slot_at_or_before(&a, "y", T0));
    jn_scheduler_plan(s, T0);
    assert_int_equal(jn_scheduler_peek(s, "x", &p1), 0);
    /* the same schedule again: the plan stays */
    jn_scheduler_set(s, "x", &a, jn_schedule_slot_at_or_before(&a, "x", T0));
    assert_int_equal(jn_scheduler_peek(s, "x", &p2), 0);
    assert_int_equal(p1.fire_ms, p2.fire_ms);
    /* another schedule: planned again */
    jn_scheduler_set(s, "x", &b, jn_schedule_slot_at_or_before(&b, "x", T0));
    assert_int_equal(jn_scheduler_peek(s, "x", &p2), 1);
    jn_scheduler_plan(s, T0);
    assert_int_equal(jn_scheduler_peek(s, "x", &p2), 0);
    assert_int_equal(p2.slot_ms, jn_schedule_slot_after(&b, "x", T0));
    assert_int_equal(jn_scheduler_count(s), 2);
    assert_int_equal(jn_scheduler_remove(s, "x"), 0);
    assert_int_equal(jn_scheduler_remove(s, "x"), 1);
    assert_int_equal(jn_scheduler_peek(s, "x", &p2), 1);
    /* the callback drops "y" the first time it fires */
    l.drop_id = "y";
    run(s, &l, T0, T0 + HOUR, SEC);
    assert_int_equal(l.n, 1);
    assert_int_equal(jn_scheduler_count(s), 0);
    assert_int_equal(jn_scheduler_next_fire(s), INT64_MAX);
    free(l.fires);
    jn_scheduler_destroy(s);
}

static void test_cron_with_jitter(void **state)
{
    jn_scheduler_t *s = jn_scheduler_create(NULL);
    jn_schedule_t sc = sched("0 * * * *", 10 * MIN);
    log_t l = {0};
    size_t i;

    (void)state;
    jn_scheduler_set(s, "j", &sc, jn_schedule_slot_at_or_before(&sc, "j", T0));
    run(s, &l, T0, T0 + 6 * HOUR + 10 * MIN, SEC);
    assert_int_equal(l.n, 6);
    for (i = 0; i < l.n; i++) {
        assert_int_equal(l.fires[i].slot_ms, T0 + (int64_t)(i + 1) * HOUR);
        assert_true(l.fires[i].fire_ms >= l.fires[i].slot_ms &&
                    l.fires[i].fire_ms <= l.fires[i].slot_ms + 10 * MIN);
    }
    free(l.fires);
    jn_scheduler_destroy(s);
}

/* Two schedulers over the same integrations produce the same slot ids. */
static void test_same_slot_ids_everywhere(void **state)
{
    jn_scheduler_t *a = jn_scheduler_create(NULL), *b = jn_scheduler_create(NULL);
    jn_schedule_t sc = sched("10m", 3 * MIN);
    log_t la = {0}, lb = {0};
    size_t i;
    char id[16], ka[96], kb[96];

    (void)state;
    for (i = 0; i < 30; i++) {
        snprintf(id, sizeof(id), "int-%zu", i);
        jn_scheduler_set(a, id, &sc, jn_schedule_slot_at_or_before(&sc, id, T0));
        jn_scheduler_set(b, id, &sc, jn_schedule_slot_at_or_before(&sc, id, T0));
    }
    run(a, &la, T0, T0 + HOUR + 3 * MIN, SEC);
    run(b, &lb, T0, T0 + HOUR + 3 * MIN, 3 * SEC); /* coarser ticks, same slots */
    assert_int_equal(la.n, lb.n);
    assert_true(la.n >= 30 * 6);
    for (i = 0; i < la.n; i++) {
        size_t k;
        int found = 0;
        jn_schedule_slot_id(la.fires[i].id, la.fires[i].slot_ms, ka, sizeof(ka));
        for (k = 0; k < lb.n && !found; k++) {
            jn_schedule_slot_id(lb.fires[k].id, lb.fires[k].slot_ms, kb, sizeof(kb));
            found = strcmp(ka, kb) == 0;
        }
        assert_true(found);
    }
    free(la.fires);
    free(lb.fires);
    jn_scheduler_destroy(a);
    jn_scheduler_destroy(b);
}

static void test_memory_per_schedule(void **state)
{
    jn_scheduler_t *s = jn_scheduler_create(NULL);
    jn_schedule_t sc = sched("*/5 * * * *", MIN);
    char id[40];
    size_t i;

    (void)state;
    for (i = 0; i < 20000; i++) {
        snprintf(id, sizeof(id), "org-%zu-github", i);
        assert_int_equal(jn_scheduler_set(s, id, &sc, 1), 0);
    }
    jn_scheduler_plan(s, T0);
    assert_int_equal(jn_scheduler_count(s), 20000);
    assert_true(jn_scheduler_memory(s) / 20000 < 200);
    jn_scheduler_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_schedule_parse),
        cmocka_unit_test(test_interval_slots_and_phase),
        cmocka_unit_test(test_jitter_deterministic),
        cmocka_unit_test(test_slot_id),
        cmocka_unit_test(test_due_order_and_timeliness),
        cmocka_unit_test(test_stable_across_restarts),
        cmocka_unit_test(test_catch_up_spread),
        cmocka_unit_test(test_catch_up_yields_to_next_slot),
        cmocka_unit_test(test_never_run_within_jitter_runs_once),
        cmocka_unit_test(test_never_run_fires_promptly),
        cmocka_unit_test(test_stall_counts_as_missed),
        cmocka_unit_test(test_replace_remove_and_drop),
        cmocka_unit_test(test_cron_with_jitter),
        cmocka_unit_test(test_same_slot_ids_everywhere),
        cmocka_unit_test(test_memory_per_schedule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
