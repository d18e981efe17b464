/* Rate-limit decision benchmark, run by tools/bench/ratelimit (built only
 * with -DJUNCTION_BENCH=ON).
 *
 *   ratelimit_bench --local [--checks N]
 *   ratelimit_bench --redis URL --clients C [--seconds S] [--pipelined]
 *
 * --local: jn_ratelimit_take on one in-process bucket, N checks (default 20
 * million) with the clock moving every 64 checks (so the refill arithmetic
 * runs), twice: a bucket whose limits are never reached (every check is
 * granted) and one at its limit (nearly every check is refused and computes
 * its wait). The figure is CPU nanoseconds per check.
 *
 * --redis: the shared bucket (jn_redis_bucket_take, the EVALSHA script the
 * traffic layer runs for every request in a cluster) against URL, C
 * concurrent streams for S seconds (default 5) after a 0.5 s warm-up. Each
 * stream has one decision outstanding at a time: the next is sent when the
 * previous answer arrives, which is how a lane of the traffic layer uses it
 * (one decision in flight per lane). Streams use keys of their own (many
 * organizations). By default each stream has its own jn_redis client (its own
 * connection, as `redis-benchmark -c C` opens C connections); --pipelined
 * runs all C streams on one client, as the runtime does (one client per
 * process, C commands in flight on it). Figures: decisions per second and the
 * latency of each decision (send to callback) at p50 and p99, all on one
 * libuv loop in one thread, as redis-benchmark is.
 *
 * The last line is machine-readable: FIGURES key=value ...
 */
#include "junction/clock.h"
#include "junction/ratelimit.h"
#include "junction/redis.h"
#include "junction/redis_sync.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#define MAX_CLIENTS 1024
#define WARMUP_NS 500000000ull

static void die(const char *what)
{
    fprintf(stderr, "ratelimit_bench: %s\n", what);
    exit(1);
}

static double cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ---- local ---- */

/* ns per check over n checks; *granted counts the granted ones. */
static double local_run(const jn_ratelimit_config_t *cfg, long n, long *granted)
{
    jn_ratelimit_t *rl;
    char err[256];
    int64_t wait, now = 1000000;
    double t0;

    if ((rl = jn_ratelimit_create(cfg, err, sizeof err)) == NULL)
        die(err);
    *granted = 0;
    t0 = cpu_ns();
    for (long i = 0; i < n; i++) {
        if ((i & 63) == 0)
            now++;
        if (jn_ratelimit_take(rl, now, 1, &wait, err, sizeof err) == 1)
            (*granted)++;
    }
    t0 = cpu_ns() - t0;
    jn_ratelimit_destroy(rl);
    return t0 / (double)n;
}

static void local_bench(long n)
{
    jn_ratelimit_config_t open, tight;
    long g_open, g_tight;
    double ns_open, ns_tight;

    /* GitHub's declared shape: per-second with burst, per-minute, per-hour */
    jn_ratelimit_config_init(&open);
    open.per_second = 1e9;
    open.burst = 1e9;
    open.per_minute = 1e9;
    open.per_hour = 1e9;
    tight = open;
    tight.per_second = 10;
    tight.burst = 20;
    tight.per_minute = 900;
    tight.per_hour = 5000;
    local_run(&open, n / 10, &g_open); /* warm-up */
    ns_open = local_run(&open, n, &g_open);
    ns_tight = local_run(&tight, n, &g_tight);
    printf("local: %ld checks per bucket (3 windows), clock moving every 64 checks\n", n);
    printf("  %-44s %8.1f ns/check (%ld granted)\n", "bucket below its limits", ns_open, g_open);
    printf("  %-44s %8.1f ns/check (%ld granted)\n", "bucket at its limits", ns_tight, g_tight);
    printf("FIGURES local_ns_per_check=%.1f local_limited_ns_per_check=%.1f\n", ns_open, ns_tight);
}

/* ---- Redis ---- */

typedef struct bench bench_t;

typedef struct {
    bench_t *b;
    jn_redis_t *r;
    char key[64];
    uint64_t sent_ns;
} stream_t;

struct bench {
    uv_loop_t *loop;
    stream_t streams[MAX_CLIENTS];
    jn_redis_t *clients[MAX_CLIENTS];
    int nclients, nstreams;
    jn_redis_bucket_config_t cfg;
    uint64_t start_ns, measure_ns, end_ns;
    int stopping;
    uint64_t decisions, granted, errors;
    double *lat_ms;
    size_t nlat, cap;
    char last_error[256];
};

static void send_next(stream_t *s);

static void on_take(int status, const jn_redis_bucket_result_t *res, const char *error, void *ud)
{
    stream_t *s = ud;
    bench_t *b = s->b;
    uint64_t now = jn_mono_ns();

    if (b->stopping) /* failed by the clients' close */
        return;
    if (status != JN_REDIS_OK) {
        b->errors++;
        snprintf(b->last_error, sizeof b->last_error, "%s", error);
    } else if (now >= b->measure_ns && now < b->end_ns) {
        b->decisions++;
        b->granted += res->granted != 0;
        if (b->nlat == b->cap) {
            b->cap = b->cap ? b->cap * 2 : 1 << 16;
            if ((b->lat_ms = realloc(b->lat_ms, b->cap * sizeof *b->lat_ms)) == NULL)
                die("out of memory");
        }
        b->lat_ms[b->nlat++] = (double)(now - s->sent_ns) / 1e6;
    }
    if (now < b->end_ns && !b->stopping)
        send_next(s);
}

static void send_next(stream_t *s)
{
    s->sent_ns = jn_mono_ns();
    if (jn_redis_bucket_take(s->r, s->key, &s->b->cfg, 1, on_take, s) != 0)
        die("jn_redis_bucket_take refused the request");
}

static void on_end(uv_timer_t *t)
{
    bench_t *b = t->data;
    b->stopping = 1;
    for (int i = 0; i < b->nclients; i++)
        jn_redis_close(b->clients[i]);
    uv_close((uv_handle_t *)t, NULL);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double percentile(const double *v, size_t n, double p)
{
    size_t i;
    if (n == 0)
        return 0;
    i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static void redis_bench(const char *url, int clients, double seconds, int pipelined)
{
    static bench_t b;
    uv_timer_t end;
    jn_redis_opts_t o;
    char err[256];
    double secs, p50, p99;

    b.loop = uv_default_loop();
    b.nstreams = clients;
    b.nclients = pipelined ? 1 : clients;
    /* limits that are never reached: every decision runs the whole script */
    b.cfg.per_second = 1e9;
    b.cfg.burst = 1e9;
    b.cfg.per_minute = 1e9;
    b.cfg.per_hour = 1e9;
    jn_redis_opts_init(&o);
    o.command_timeout_ms = 5000;
    o.connect_timeout_ms = 5000;
    for (int i = 0; i < b.nclients; i++)
        if ((b.clients[i] = jn_redis_create(b.loop, url, &o, err, sizeof err)) == NULL)
            die(err);
    b.start_ns = jn_mono_ns();
    b.measure_ns = b.start_ns + WARMUP_NS;
    b.end_ns = b.measure_ns + (uint64_t)(seconds * 1e9);
    for (int i = 0; i < clients; i++) {
        stream_t *s = &b.streams[i];
        s->b = &b;
        s->r = b.clients[pipelined ? 0 : i];
        snprintf(s->key, sizeof s->key, "jn:rl:{bench:org-%d}", i);
        send_next(s); /* held until the client has connected */
    }
    uv_timer_init(b.loop, &end);
    end.data = &b;
    uv_timer_start(&end, on_end, (uint64_t)((double)(b.end_ns - b.start_ns) / 1e6) + 1, 0);
    uv_run(b.loop, UV_RUN_DEFAULT);
    if (b.errors)
        fprintf(stderr, "ratelimit_bench: %" PRIu64 " decisions failed; the last: %s\n", b.errors,
                b.last_error);
    qsort(b.lat_ms, b.nlat, sizeof *b.lat_ms, cmp_double);
    secs = seconds;
    p50 = percentile(b.lat_ms, b.nlat, 0.50);
    p99 = percentile(b.lat_ms, b.nlat, 0.99);
    printf("redis: %d stream(s) on %d connection(s), %.1f s: %" PRIu64 " decisions (%" PRIu64
           " granted), %.0f decisions/s, p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
           clients, b.nclients, secs, b.decisions, b.granted, (double)b.decisions / secs, p50, p99,
           b.nlat ? b.lat_ms[b.nlat - 1] : 0.0);
    printf("FIGURES clients=%d connections=%d decisions_per_s=%.0f p50_ms=%.3f p99_ms=%.3f "
           "errors=%" PRIu64 "\n",
           clients, b.nclients, (double)b.decisions / secs, p50, p99, b.errors);
    free(b.lat_ms);
    uv_loop_close(b.loop);
    if (b.errors || b.decisions == 0)
        exit(1);
}

int main(int argc, char **argv)
{
    const char *url = NULL;
    long checks = 20000000;
    int local = 0, clients = 1, pipelined = 0;
    double seconds = 5;

    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--local") == 0)
            local = 1;
        else if (strcmp(argv[a], "--checks") == 0 && a + 1 < argc)
            checks = strtol(argv[++a], NULL, 10);
        else if (strcmp(argv[a], "--redis") == 0 && a + 1 < argc)
            url = argv[++a];
        else if (strcmp(argv[a], "--clients") == 0 && a + 1 < argc)
            clients = atoi(argv[++a]);
        else if (strcmp(argv[a], "--seconds") == 0 && a + 1 < argc)
            seconds = strtod(argv[++a], NULL);
        else if (strcmp(argv[a], "--pipelined") == 0)
            pipelined = 1;
        else
            die("usage: ratelimit_bench --local [--checks N] | --redis URL --clients C "
                "[--seconds S] [--pipelined]");
    }
    if (local == (url != NULL))
        die("give --local or --redis URL");
    if (checks < 1000 || clients < 1 || clients > MAX_CLIENTS || !(seconds >= 0.5))
        die("--checks must be at least 1000, --clients from 1 to 1024, --seconds at least 0.5");
    if (local)
        local_bench(checks);
    else
        redis_bench(url, clients, seconds, pipelined);
    return 0;
}
