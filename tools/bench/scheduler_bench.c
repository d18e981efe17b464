/* Scheduler benchmark, run by tools/bench/scheduler (built only with
 * -DJUNCTION_BENCH=ON).
 *
 *   scheduler_bench [--schedules N] [--hours H] [--seed S]
 *
 * N integrations (default 100,000) with a realistic mix of schedules: 70%
 * intervals (15m, 1h, 6h, 1d) and 30% cron expressions (every 15 minutes,
 * hourly, daily at 02:00, weekdays at 09:30), most with a jitter, ids shaped
 * like real ones. A driven clock ticks once a second over H simulated hours
 * (default 6); every due run is handed to a callback that counts it.
 *
 *  1. Memory per schedule: the bytes the scheduler allocated (its own count,
 *     jn_scheduler_memory) and the growth of the process's resident set while
 *     the schedules were added and planned, divided by N.
 *  2. Scheduling overhead per tick: CPU time of all ticks divided by their
 *     number (most ticks fire a few runs, as in production), and per fired run.
 *  3. Reference, in the same run and on the same schedules: a naive scheduler
 *     that keeps each schedule's next fire time in an array and scans all of
 *     them on every tick (what a timer-per-schedule loop without a priority
 *     queue does). It computes slots with the same functions, so the two
 *     differ only in how they find what is due. Both must fire the same runs.
 *  4. Planning after downtime: plan() for all N schedules after three hours
 *     without a scheduler (those whose slot passed meanwhile get one catch-up
 *     run each, spread over the 10-minute window), and what fires next.
 *
 * The last line is machine-readable: FIGURES key=value ...
 */
#include "junction/scheduler.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SEC 1000LL
#define HOUR (3600 * SEC)
/* 2026-03-10 10:00:00 UTC, a Tuesday */
#define T0 1773136800000LL

static const char *const cron_exprs[] = {"*/15 * * * *", "0 * * * *", "0 2 * * *",
                                         "30 9 * * mon-fri"};
static const char *const intervals[] = {"15m", "1h", "6h", "1d"};

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double cpu_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f == NULL)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

static void die(const char *what)
{
    fprintf(stderr, "scheduler_bench: %s\n", what);
    exit(1);
}

typedef struct {
    char id[64];
    jn_schedule_t sched;
    int64_t last_slot;
} spec_t;

static jn_schedule_t make_schedule(size_t i)
{
    jn_schedule_t s;
    char err[256];
    uint64_t r = next_rand();
    int64_t jitter;

    if (r % 10 < 7) {
        if (jn_schedule_parse(intervals[(r >> 8) % 4], &s, err, sizeof(err)) != 0)
            die(err);
        jitter = (int64_t)((r >> 16) % 3) * 60 * SEC; /* 0, 1 or 2 minutes */
    } else {
        if (jn_schedule_parse(cron_exprs[(r >> 8) % 4], &s, err, sizeof(err)) != 0)
            die(err);
        jitter = (int64_t)((r >> 16) % 6) * 60 * SEC; /* up to 5 minutes */
    }
    if (s.kind == JN_SCHEDULE_INTERVAL && jitter >= s.u.every_ms)
        jitter = 0;
    (void)i;
    if (jn_schedule_set_jitter(&s, jitter, err, sizeof(err)) != 0)
        die(err);
    return s;
}

/* ---- Junction: the heap ---- */

typedef struct {
    uint64_t fired;
    uint64_t catch_up; /* of which catch-up runs */
    uint64_t checksum; /* over (id, slot) of every fire: both schedulers must agree */
} counter_t;

static uint64_t fold(uint64_t sum, const char *id, int64_t slot)
{
    return sum + (jn_schedule_hash(id, slot) | 1);
}

static int count_fire(void *ud, const jn_scheduler_fire_t *f)
{
    counter_t *c = ud;

    c->fired++;
    c->catch_up += f->kind == JN_FIRE_CATCH_UP;
    c->checksum = fold(c->checksum, f->id, f->slot_ms);
    return 0;
}

/* ---- reference: scan every schedule on every tick ---- */

typedef struct {
    const spec_t *spec;
    int64_t slot, due;
} naive_t;

static void naive_tick(naive_t *all, size_t n, int64_t now, counter_t *c)
{
    size_t i;

    for (i = 0; i < n; i++) {
        naive_t *e = &all[i];
        if (e->due > now)
            continue;
        c->fired++;
        c->checksum = fold(c->checksum, e->spec->id, e->slot);
        e->slot = jn_schedule_slot_after(&e->spec->sched, e->spec->id, e->slot);
        e->due = jn_schedule_fire_ms(&e->spec->sched, e->spec->id, e->slot);
    }
}

int main(int argc, char **argv)
{
    size_t n = 100000, i;
    int hours = 6, a;
    spec_t *specs;
    naive_t *naive;
    jn_scheduler_t *s;
    jn_scheduler_opts_t opts = {.catch_up_window_ms = 600 * SEC};
    counter_t heap = {0, 0, 0}, scan = {0, 0, 0}, catchup = {0, 0, 0};
    long rss0, rss1;
    double t, heap_s, scan_s, plan_s;
    int64_t now, ticks, end;
    size_t mem;

    for (a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--schedules") == 0 && a + 1 < argc)
            n = (size_t)strtoul(argv[++a], NULL, 10);
        else if (strcmp(argv[a], "--hours") == 0 && a + 1 < argc)
            hours = atoi(argv[++a]);
        else if (strcmp(argv[a], "--seed") == 0 && a + 1 < argc)
            rng = strtoull(argv[++a], NULL, 10) | 1;
        else
            die("usage: scheduler_bench [--schedules N] [--hours H] [--seed S]");
    }
    if (n == 0 || n > 10000000 || hours < 1)
        die("--schedules must be from 1 to 10000000 and --hours positive");
    specs = calloc(n, sizeof(*specs));
    naive = calloc(n, sizeof(*naive));
    if (specs == NULL || naive == NULL)
        die("out of memory");
    for (i = 0; i < n; i++) {
        snprintf(specs[i].id, sizeof(specs[i].id), "org-%05zu-%s-%zu", i / 3,
                 i % 3 == 0   ? "github"
                 : i % 3 == 1 ? "okta"
                              : "aws",
                 i);
        specs[i].sched = make_schedule(i);
        /* each ran its latest slot already: steady state, nothing to catch up */
        specs[i].last_slot = jn_schedule_slot_at_or_before(&specs[i].sched, specs[i].id, T0);
    }

    /* 1. memory */
    rss0 = rss_bytes();
    s = jn_scheduler_create(&opts);
    if (s == NULL)
        die("out of memory");
    for (i = 0; i < n; i++)
        if (jn_scheduler_set(s, specs[i].id, &specs[i].sched, specs[i].last_slot) != 0)
            die("out of memory");
    jn_scheduler_plan(s, T0);
    rss1 = rss_bytes();
    mem = jn_scheduler_memory(s);

    /* 2. ticks, once a second */
    end = T0 + (int64_t)hours * HOUR;
    ticks = 0;
    t = cpu_s();
    for (now = T0 + SEC; now <= end; now += SEC, ticks++)
        jn_scheduler_tick(s, now, count_fire, &heap);
    heap_s = cpu_s() - t;

    /* 3. the reference over the same schedules and ticks */
    for (i = 0; i < n; i++) {
        naive[i].spec = &specs[i];
        naive[i].slot = jn_schedule_slot_after(&specs[i].sched, specs[i].id, specs[i].last_slot);
        naive[i].due = jn_schedule_fire_ms(&specs[i].sched, specs[i].id, naive[i].slot);
    }
    t = cpu_s();
    for (now = T0 + SEC; now <= end; now += SEC)
        naive_tick(naive, n, now, &scan);
    scan_s = cpu_s() - t;
    if (heap.fired != scan.fired || heap.checksum != scan.checksum) {
        fprintf(stderr,
                "scheduler_bench: the two schedulers disagree: %" PRIu64 " vs %" PRIu64 " runs\n",
                heap.fired, scan.fired);
        return 1;
    }
    jn_scheduler_destroy(s);

    /* 4. after three hours of downtime */
    s = jn_scheduler_create(&opts);
    for (i = 0; i < n; i++)
        jn_scheduler_set(s, specs[i].id, &specs[i].sched, specs[i].last_slot);
    t = cpu_s();
    jn_scheduler_plan(s, T0 + 3 * HOUR);
    plan_s = cpu_s() - t;
    for (now = T0 + 3 * HOUR; now <= T0 + 3 * HOUR + 600 * SEC; now += SEC)
        jn_scheduler_tick(s, now, count_fire, &catchup);
    jn_scheduler_destroy(s);

    printf("scheduler: %zu schedules (70%% intervals 15m/1h/6h/1d, 30%% cron), jitter up to 5m,"
           " %d simulated hours of 1 s ticks\n",
           n, hours);
    printf("  %-46s %10.1f bytes (allocated by the scheduler)\n", "memory per schedule",
           (double)mem / (double)n);
    printf("  %-46s %10.1f bytes\n", "resident set growth per schedule",
           (double)(rss1 - rss0) / (double)n);
    printf("  %-46s %10" PRIu64 " over %" PRId64 " ticks\n", "runs fired", heap.fired, ticks);
    printf("  %-46s %10.0f ns\n", "junction (heap): per tick", heap_s * 1e9 / (double)ticks);
    printf("  %-46s %10.0f ns\n", "junction (heap): per fired run",
           heap.fired ? heap_s * 1e9 / (double)heap.fired : 0.0);
    printf("  %-46s %10.0f ns\n", "reference (scan all): per tick", scan_s * 1e9 / (double)ticks);
    printf("  %-46s %10.1f ms; in the next 10 minutes %" PRIu64 " catch-up runs (the others'"
           " regular slot came first) and %" PRIu64 " regular ones\n",
           "plan after 3 h of downtime", plan_s * 1e3, catchup.catch_up,
           catchup.fired - catchup.catch_up);
    printf("FIGURES bytes_per_schedule=%.1f rss_bytes_per_schedule=%.1f tick_ns=%.0f"
           " naive_tick_ns=%.0f ticks_per_s=%.0f naive_ticks_per_s=%.0f fired=%" PRIu64
           " plan_ms=%.1f\n",
           (double)mem / (double)n, (double)(rss1 - rss0) / (double)n, heap_s * 1e9 / (double)ticks,
           scan_s * 1e9 / (double)ticks, (double)ticks / heap_s, (double)ticks / scan_s, heap.fired,
           plan_s * 1e3);
    free(specs);
    free(naive);
    return 0;
}
