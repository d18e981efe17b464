/* Hot-deploy benchmark, run by tools/bench/deploy (built only with
 * -DJUNCTION_BENCH=ON).
 *
 *   deploy_bench [--in-flight N] [--rounds R] [--window-ms W] [--every-ms D]
 *                [--cli JUNCTION] [--cli-every-ms C]
 *
 * One runtime and one connector registry on a real SQLite store (synchronous
 * commits, as in production), N sandboxed jobs in flight at all times (each
 * acquires the live version when it starts, does a little Lua work, waits
 * 2 ms as on a provider's answer, and reports the version it ran). Time is
 * cut into windows of W ms that alternate: without deploys (the reference),
 * then with a deploy of a new version every D ms. The two kinds alternate R
 * times in the same run, so drift (CPU frequency, other load) hits both.
 *
 * Two phases, each of R rounds:
 *  1. in-process deploys (the HTTP API's path): jn_registry_deploy from the
 *     source text on the loop (signature check, sandboxed load and metadata
 *     checks, version rule, store transaction with its fsync, swap);
 *  2. with --cli, deploys by `junction connector deploy` processes spawned
 *     every C ms (default 100): the running registry notices each at its
 *     next poll of the store (connector_poll_ms, 25) and loads it.
 *
 * Measured:
 *  - deploy call (phase 1): the whole jn_registry_deploy call;
 *  - deploy-to-live: from the start of the deploy call (phase 1) or the
 *    commit of the deploy row by the CLI (phase 2) until the first job
 *    starts on the new version;
 *  - job latency (start to end) of the jobs started in each kind of window.
 * Every job must succeed and report the version it acquired (checked).
 *
 * The last line is machine-readable: FIGURES key=value ...
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ftw.h>

#include "job.h"
#include "junction/clock.h"
#include "junction/config.h"
#include "junction/log.h"
#include "registry.h"
#include "runtime.h"

typedef struct {
    double *v;
    size_t n, cap;
} samples_t;

typedef struct bench bench_t;

typedef struct {
    bench_t *b;
    uint64_t started_ns;
    int during; /* started in a deploy window */
    int phase;
    char version[32];
    int busy;
} slot_t;

struct bench {
    uv_loop_t loop;
    char dir[64];
    const char *cli; /* the junction binary; NULL: no phase 2 */
    int cli_every_ms;
    int cli_running;
    uv_process_t child;
    jn_runtime_t rt;
    jn_registry_t *reg;
    jn_store_t *store;
    slot_t *slots;
    int in_flight, rounds, window_ms, every_ms;
    int window;    /* windows done */
    int phase;     /* 0: in-process deploys, 1: CLI deploys */
    int deploying; /* the current window deploys */
    int deploys;
    int stop;
    uint64_t window_end_ns, next_deploy_ns;
    uint64_t pending_deploy_ns; /* a deploy waiting for its first job; 0: none */
    char pending_version[32];
    uv_timer_t tick;
    samples_t call_ms, validate_ms, to_live_ms, during_ms, without_ms;
    samples_t cli_to_live_ms, cli_during_ms, cli_without_ms;
    long failed, mismatched;
    char failure[256];
};

static void add(samples_t *s, double v)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->v = realloc(s->v, s->cap * sizeof(double));
        if (s->v == NULL) {
            fprintf(stderr, "deploy_bench: out of memory\n");
            exit(1);
        }
    }
    s->v[s->n++] = v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(samples_t *s, double p)
{
    size_t i;

    if (s->n == 0)
        return 0;
    qsort(s->v, s->n, sizeof(double), cmp_double);
    i = (size_t)(p / 100.0 * (double)(s->n - 1) + 0.5);
    return s->v[i];
}

static char *source(const char *version)
{
    char *s = NULL;

    if (asprintf(&s,
                 "local c = connector {\n"
                 "  provider_type = \"bench\", display_name = \"Deploy bench\",\n"
                 "  description = \"a little work per job\", version = \"%s\",\n"
                 "  auth_types = { \"none\" }, capabilities = { \"evidence_collection\" },\n"
                 "  rate_limits = { requests_per_second = 100 }, egress = { \"example.invalid\" "
                 "},\n"
                 "  documentation_url = \"https://example.invalid/docs\",\n"
                 "}\n"
                 "function c.test_connection() return { success = true } end\n"
                 "function c.collect_evidence(ctx)\n"
                 "  local t = {}\n"
                 "  for i = 1, 50 do t[i] = { id = i, name = \"item-\" .. i } end\n"
                 "  local text = ctx.json.encode(t)\n"
                 "  ctx.sleep(0.002)\n"
                 "  return { version = ctx.connector_version, bytes = #text }\n"
                 "end\n"
                 "return c\n",
                 version) < 0) {
        fprintf(stderr, "deploy_bench: out of memory\n");
        exit(1);
    }
    return s;
}

static void deploy_next(bench_t *b)
{
    jn_deploy_request_t req = {0};
    jn_deploy_result_t out;
    char version[32], err[2048], *src;
    uint64_t t0 = jn_mono_ns();

    snprintf(version, sizeof(version), "1.%d.0", b->deploys + 1);
    src = source(version);
    req.name = "bench.lua";
    req.source = src;
    req.source_len = strlen(src);
    req.actor = "bench";
    if (jn_registry_deploy(b->reg, &req, &out, err, sizeof(err)) != 0) {
        fprintf(stderr, "deploy_bench: deploy %s: %s\n", version, err);
        exit(1);
    }
    free(src);
    b->deploys++;
    add(&b->call_ms, (double)(jn_mono_ns() - t0) / 1e6);
    add(&b->validate_ms, out.validate_ms);
    b->pending_deploy_ns = t0;
    snprintf(b->pending_version, sizeof(b->pending_version), "%s", version);
}

static void start_job(bench_t *b, slot_t *s);

static void job_done(void *ud, jn_job_t *job)
{
    slot_t *s = ud;
    bench_t *b = s->b;
    const char *res = jn_job_result_json(job);
    char want[64];

    s->busy = 0;
    if (jn_job_status(job) != JN_JOB_SUCCEEDED) {
        b->failed++;
        snprintf(b->failure, sizeof(b->failure), "%s", jn_job_error(job) ? jn_job_error(job) : "?");
    } else {
        snprintf(want, sizeof(want), "\"version\":\"%s\"", s->version);
        if (res == NULL || strstr(res, want) == NULL)
            b->mismatched++;
    }
    if (s->phase == 0)
        add(s->during ? &b->during_ms : &b->without_ms,
            (double)(jn_mono_ns() - s->started_ns) / 1e6);
    else
        add(s->during ? &b->cli_during_ms : &b->cli_without_ms,
            (double)(jn_mono_ns() - s->started_ns) / 1e6);
}

static void start_job(bench_t *b, slot_t *s)
{
    jn_job_opts_t o = {0};
    jn_connector_t *c;
    char err[512];

    c = jn_registry_acquire(b->reg, "bench", NULL, err, sizeof(err));
    if (c == NULL) {
        fprintf(stderr, "deploy_bench: %s\n", err);
        exit(1);
    }
    s->started_ns = jn_mono_ns();
    s->during = b->deploying;
    s->phase = b->phase;
    snprintf(s->version, sizeof(s->version), "%s", c->version);
    if (b->pending_deploy_ns && strcmp(c->version, b->pending_version) == 0) {
        add(b->phase ? &b->cli_to_live_ms : &b->to_live_ms,
            (double)(s->started_ns - b->pending_deploy_ns) / 1e6);
        b->pending_deploy_ns = 0;
    }
    o.connector = c;
    o.entry = "collect_evidence";
    o.hooks = (jn_job_hooks_t){NULL, job_done, s};
    s->busy = 1;
    if (jn_job_start(&b->rt, &o, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "deploy_bench: job: %s\n", err);
        exit(1);
    }
    jn_connector_unref(c);
}

static void on_child_exit(uv_process_t *p, int64_t status, int signal)
{
    bench_t *b = p->data;

    b->cli_running = 0;
    if (status != 0 || signal != 0) {
        fprintf(stderr, "deploy_bench: `junction connector deploy` exited %lld (signal %d)\n",
                (long long)status, signal);
        exit(1);
    }
    uv_close((uv_handle_t *)p, NULL);
}

/* Phase 2: another process deploys the next version into the same store. */
static void spawn_cli_deploy(bench_t *b)
{
    uv_process_options_t o = {0};
    uv_stdio_container_t stdio[3];
    char path[128], env_data[128], version[32], *src, *args[6], *env[3];
    FILE *f;
    int rc;

    b->deploys++;
    snprintf(version, sizeof(version), "1.%d.0", b->deploys);
    snprintf(path, sizeof(path), "%s/bench-%d.lua", b->dir, b->deploys);
    src = source(version);
    f = fopen(path, "w");
    if (f == NULL || fputs(src, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "deploy_bench: cannot write %s\n", path);
        exit(1);
    }
    free(src);
    snprintf(env_data, sizeof(env_data), "JUNCTION_DATA_DIR=%s", b->dir);
    args[0] = (char *)b->cli;
    args[1] = "connector";
    args[2] = "deploy";
    args[3] = "--no-specs";
    args[4] = path;
    args[5] = NULL;
    env[0] = env_data;
    env[1] = "JUNCTION_LOG_LEVEL=error";
    env[2] = NULL;
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_IGNORE;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = 2;
    o.file = b->cli;
    o.args = args;
    o.env = env;
    o.stdio = stdio;
    o.stdio_count = 3;
    o.exit_cb = on_child_exit;
    b->child.data = b;
    rc = uv_spawn(&b->loop, &b->child, &o);
    if (rc != 0) {
        fprintf(stderr, "deploy_bench: cannot run %s: %s\n", b->cli, uv_strerror(rc));
        exit(1);
    }
    b->cli_running = 1;
}

/* A version went live; for one deployed by another process the clock
 * starts at the commit of its deploy row. */
static void on_live(void *ud, const jn_registry_event_t *ev)
{
    bench_t *b = ud;
    int64_t behind_ms = jn_now_ms() - ev->deployed_ms;

    if (ev->local)
        return;
    b->pending_deploy_ns = jn_mono_ns() - (uint64_t)(behind_ms > 0 ? behind_ms : 0) * 1000000;
    snprintf(b->pending_version, sizeof(b->pending_version), "%s", ev->version);
}

/* Every millisecond: switch windows, deploy when due, refill the slots. */
static void on_tick(uv_timer_t *t)
{
    bench_t *b = t->data;
    uint64_t now = jn_mono_ns();
    int i;

    if (now >= b->window_end_ns && !b->cli_running) {
        b->window++;
        if (b->window == 2 * b->rounds && b->cli != NULL && b->phase == 0) {
            b->phase = 1;
            b->window = 0;
        }
        if (b->window == 2 * b->rounds) {
            b->stop = 1;
            uv_timer_stop(t);
            return;
        }
        b->deploying = b->window % 2;
        b->window_end_ns = now + (uint64_t)b->window_ms * 1000000;
        b->next_deploy_ns = now;
    }
    if (b->deploying && now >= b->next_deploy_ns && now < b->window_end_ns) {
        if (b->phase == 0) {
            deploy_next(b);
            b->next_deploy_ns = now + (uint64_t)b->every_ms * 1000000;
        } else if (!b->cli_running) {
            spawn_cli_deploy(b);
            b->next_deploy_ns = now + (uint64_t)b->cli_every_ms * 1000000;
        }
    }
    for (i = 0; i < b->in_flight; i++)
        if (!b->slots[i].busy)
            start_job(b, &b->slots[i]);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(int argc, char **argv)
{
    bench_t b = {0};
    jn_registry_opts_t ro = {0};
    jn_config_t *cfg;
    char *dir = b.dir, db[128], err[512], *src;
    int i;

    b.in_flight = 64;
    b.rounds = 10;
    b.window_ms = 500;
    b.every_ms = 25;
    b.cli_every_ms = 100;
    for (i = 1; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (strcmp(argv[i], "--cli") == 0) {
            b.cli = argv[i + 1];
            continue;
        }
        if (v <= 0) {
            fprintf(stderr, "deploy_bench: %s needs a positive number\n", argv[i]);
            return 2;
        }
        if (strcmp(argv[i], "--in-flight") == 0)
            b.in_flight = v;
        else if (strcmp(argv[i], "--rounds") == 0)
            b.rounds = v;
        else if (strcmp(argv[i], "--window-ms") == 0)
            b.window_ms = v;
        else if (strcmp(argv[i], "--every-ms") == 0)
            b.every_ms = v;
        else if (strcmp(argv[i], "--cli-every-ms") == 0)
            b.cli_every_ms = v;
        else {
            fprintf(stderr, "deploy_bench: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    jn_log_set_level(JN_LOG_ERROR);
    snprintf(b.dir, sizeof(b.dir), "/tmp/jn-deploy-bench-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("deploy_bench: mkdtemp");
        return 1;
    }
    snprintf(db, sizeof(db), "%s/junction.db", dir);
    if ((b.store = jn_store_open_sqlite(db, err, sizeof(err))) == NULL) {
        fprintf(stderr, "deploy_bench: %s\n", err);
        return 1;
    }
    cfg = jn_config_create();
    uv_loop_init(&b.loop);
    ro.store = b.store;
    ro.mode = JN_CONNECTOR_DEVELOPMENT;
    ro.loop = &b.loop;
    if ((b.reg = jn_registry_create(&ro, err, sizeof(err))) == NULL) {
        fprintf(stderr, "deploy_bench: %s\n", err);
        return 1;
    }
    src = source("1.0.0");
    {
        jn_deploy_request_t req = {"bench.lua", src, strlen(src), NULL, 0, "bench", 0, NULL};
        jn_deploy_result_t out;
        if (jn_registry_deploy(b.reg, &req, &out, err, sizeof(err)) != 0) {
            fprintf(stderr, "deploy_bench: %s\n", err);
            return 1;
        }
    }
    free(src);
    /* deploys by other processes (phase 2) are noticed by polling the store */
    if (jn_registry_add_listener(b.reg, on_live, &b) != 0 ||
        jn_registry_poll(b.reg, (uint64_t)jn_config_int(cfg, "connector_poll_ms"), err,
                         sizeof(err)) != 0) {
        fprintf(stderr, "deploy_bench: %s\n", err);
        return 1;
    }
    if (jn_runtime_init(&b.rt, &b.loop, cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "deploy_bench: %s\n", err);
        return 1;
    }
    b.slots = calloc((size_t)b.in_flight, sizeof(slot_t));
    for (i = 0; i < b.in_flight; i++)
        b.slots[i].b = &b;
    b.window = -1;
    uv_timer_init(&b.loop, &b.tick);
    b.tick.data = &b;
    uv_timer_start(&b.tick, on_tick, 0, 1);
    while (!b.stop || b.rt.jobs_running > 0)
        uv_run(&b.loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&b.tick, NULL);
    jn_registry_close(b.reg);
    jn_runtime_close(&b.rt);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    uv_loop_close(&b.loop);

    if (b.failed || b.mismatched) {
        fprintf(stderr, "deploy_bench: %ld jobs failed, %ld reported another version (%s)\n",
                b.failed, b.mismatched, b.failure);
        return 1;
    }
    printf("  %-40s %8zu deploys; p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
           "deploy call (validate, store, swap)", b.call_ms.n, pct(&b.call_ms, 50),
           pct(&b.call_ms, 99), pct(&b.call_ms, 100));
    printf("  %-40s %8zu deploys; p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
           "  of which validation (load, checks)", b.validate_ms.n, pct(&b.validate_ms, 50),
           pct(&b.validate_ms, 99), pct(&b.validate_ms, 100));
    printf("  %-40s %8zu deploys; p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
           "deploy-to-live (first job on it)", b.to_live_ms.n, pct(&b.to_live_ms, 50),
           pct(&b.to_live_ms, 99), pct(&b.to_live_ms, 100));
    printf("  %-40s %8zu jobs;    p50 %.2f ms, p99 %.2f ms\n", "job latency without deploys",
           b.without_ms.n, pct(&b.without_ms, 50), pct(&b.without_ms, 99));
    printf("  %-40s %8zu jobs;    p50 %.2f ms, p99 %.2f ms\n", "job latency during deploys",
           b.during_ms.n, pct(&b.during_ms, 50), pct(&b.during_ms, 99));
    if (b.cli != NULL) {
        printf("  %-40s %8zu deploys; p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
               "CLI deploy: commit-to-live (first job)", b.cli_to_live_ms.n,
               pct(&b.cli_to_live_ms, 50), pct(&b.cli_to_live_ms, 99), pct(&b.cli_to_live_ms, 100));
        printf("  %-40s %8zu jobs;    p50 %.2f ms, p99 %.2f ms\n",
               "CLI phase: job latency without deploys", b.cli_without_ms.n,
               pct(&b.cli_without_ms, 50), pct(&b.cli_without_ms, 99));
        printf("  %-40s %8zu jobs;    p50 %.2f ms, p99 %.2f ms\n",
               "CLI phase: job latency during deploys", b.cli_during_ms.n,
               pct(&b.cli_during_ms, 50), pct(&b.cli_during_ms, 99));
    }
    printf("FIGURES cli_live_p50_ms=%.3f cli_live_p99_ms=%.3f cli_live_max_ms=%.3f "
           "cli_p99_without_ms=%.3f cli_p99_during_ms=%.3f ",
           pct(&b.cli_to_live_ms, 50), pct(&b.cli_to_live_ms, 99), pct(&b.cli_to_live_ms, 100),
           pct(&b.cli_without_ms, 99), pct(&b.cli_during_ms, 99));
    printf("deploys=%d call_p50_ms=%.3f call_p99_ms=%.3f call_max_ms=%.3f "
           "live_p50_ms=%.3f live_p99_ms=%.3f live_max_ms=%.3f p99_without_ms=%.3f "
           "p99_during_ms=%.3f p50_without_ms=%.3f p50_during_ms=%.3f jobs=%zu\n",
           b.deploys, pct(&b.call_ms, 50), pct(&b.call_ms, 99), pct(&b.call_ms, 100),
           pct(&b.to_live_ms, 50), pct(&b.to_live_ms, 99), pct(&b.to_live_ms, 100),
           pct(&b.without_ms, 99), pct(&b.during_ms, 99), pct(&b.without_ms, 50),
           pct(&b.during_ms, 50), b.without_ms.n + b.during_ms.n);
    jn_registry_destroy(b.reg);
    jn_store_close(b.store);
    jn_config_destroy(cfg);
    free(b.slots);
    free(b.call_ms.v);
    free(b.validate_ms.v);
    free(b.to_live_ms.v);
    free(b.during_ms.v);
    free(b.without_ms.v);
    free(b.cli_to_live_ms.v);
    free(b.cli_during_ms.v);
    free(b.cli_without_ms.v);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
