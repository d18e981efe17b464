/* Jobs through the Redis Streams queue (queue_redis.h): the program behind
 * tools/bench/queue.
 *
 *   queue_bench --url URL [--clients N] [--seconds S] [--prefix P]
 *
 * N processes (fork), each with its own connection, as N workers and
 * schedulers would be. Each job is what the runtime does with a scheduled
 * run: an enqueue with an idempotency key (the slot), a group (the
 * integration: one of 1,000) and one of 20 organizations, at normal priority;
 * a claim (priority, round robin over organizations, group lock, lease); an
 * ack. Every call is one script, one round trip: the pipeline depth is 1 per
 * connection.
 *
 * Three phases of S seconds each, one after the other:
 *   enqueue    every process enqueues;
 *   drain      every process claims and acknowledges the backlog until it is
 *              gone (at most 6 S);
 *   cycle      every process enqueues, claims and acknowledges a job at a time.
 * Prints a line per phase and
 *   FIGURES enqueue_per_s=<v> claim_ack_per_s=<v> jobs_per_s=<v> cycle_p50_us=<v> cycle_p99_us=<v>
 * (jobs_per_s: complete jobs per second in the cycle phase). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "junction/clock.h"
#include "junction/queue.h"
#include "junction/queue_redis.h"

#define MAX_CLIENTS 256
#define LAT_SAMPLES 200000

typedef struct {
    int64_t ops;
    int64_t errors;
    int64_t p50_us, p99_us;
} result_t;

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

static jn_queue_t *open_queue(const char *url, const char *prefix, int client)
{
    jn_queue_opts_t o = {0};
    jn_queue_redis_opts_t ro = {0};
    char name[64], err[512];
    jn_queue_t *q;

    snprintf(name, sizeof(name), "bench-%d-%ld", client, (long)getpid());
    o.consumer = name;
    o.visibility_timeout_ms = 60000;
    ro.prefix = prefix;
    q = jn_queue_open_redis(url, &ro, &o, err, sizeof(err));
    if (q == NULL)
        fprintf(stderr, "queue_bench: %s\n", err);
    return q;
}

static int enqueue_one(jn_queue_t *q, int client, int64_t i, const char *phase)
{
    jn_queue_enqueue_t e = {0};
    jn_queue_enqueued_t out;
    char key[96], group[32], org[32];

    snprintf(key, sizeof(key), "%s-%d-%" PRId64, phase, client, i);
    snprintf(group, sizeof(group), "int-%d", (int)((client * 7919 + i) % 1000));
    snprintf(org, sizeof(org), "org-%d", (int)((client + i) % 20));
    e.idempotency_key = key;
    e.group_key = group;
    e.provider = "bench";
    e.organization_id = org;
    e.priority = JN_PRIORITY_NORMAL;
    e.payload_json = "{\"integration_id\":\"int\",\"trigger\":\"schedule\"}";
    return jn_queue_enqueue(q, &e, &out);
}

/* One client's phase; writes its result to fd. */
static void run_client(const char *url, const char *prefix, int client, const char *phase,
                       double seconds, int fd)
{
    jn_queue_t *q = open_queue(url, prefix, client);
    int64_t *lat = calloc(LAT_SAMPLES, sizeof(*lat)), nlat = 0, i = 0;
    uint64_t end;
    result_t r = {0};
    jn_queue_job_t job;

    if (q == NULL || lat == NULL)
        _exit(1);
    /* the drain phase runs until the backlog is gone (within reason) */
    end = jn_mono_ns() + (uint64_t)(seconds * (strcmp(phase, "drain") == 0 ? 6 : 1) * 1e9);
    while (jn_mono_ns() < end) {
        uint64_t t0 = jn_mono_ns();
        int rc = 0;
        if (strcmp(phase, "enqueue") == 0) {
            rc = enqueue_one(q, client, i, phase);
        } else if (strcmp(phase, "drain") == 0) {
            rc = jn_queue_claim(q, "bench", &job);
            if (rc == 1)
                break; /* drained */
            if (rc == 0) {
                rc = jn_queue_ack(q, &job);
                jn_queue_job_clear(&job);
            }
        } else {
            rc = enqueue_one(q, client, i++, phase);
            if (rc == 0)
                rc = jn_queue_claim(q, "bench", &job);
            if (rc == 1) /* the others took every job there was: not an error */
                continue;
            if (rc == 0) {
                rc = jn_queue_ack(q, &job);
                jn_queue_job_clear(&job);
            }
        }
        if (strcmp(phase, "cycle") != 0)
            i++;
        if (rc != 0) {
            if (r.errors++ == 0)
                fprintf(stderr, "queue_bench: %s: %s\n", phase, jn_queue_errmsg(q));
            continue;
        }
        r.ops++;
        if (nlat < LAT_SAMPLES)
            lat[nlat++] = (int64_t)((jn_mono_ns() - t0) / 1000);
    }
    if (nlat > 0) {
        qsort(lat, (size_t)nlat, sizeof(*lat), cmp_i64);
        r.p50_us = lat[nlat / 2];
        r.p99_us = lat[nlat * 99 / 100];
    }
    if (write(fd, &r, sizeof(r)) != sizeof(r))
        _exit(1);
    free(lat);
    jn_queue_destroy(q);
    _exit(0);
}

/* Runs a phase with `clients` processes; ops per second over the phase. */
static double phase(const char *url, const char *prefix, int clients, const char *name,
                    double seconds, int64_t *p50, int64_t *p99)
{
    int fds[2], i, status;
    pid_t pids[MAX_CLIENTS];
    uint64_t t0 = jn_mono_ns();
    int64_t ops = 0, errors = 0, w50 = 0, w99 = 0;
    result_t r;
    double elapsed;

    if (pipe(fds) != 0)
        exit(1);
    for (i = 0; i < clients; i++) {
        pids[i] = fork();
        if (pids[i] < 0)
            exit(1);
        if (pids[i] == 0) {
            close(fds[0]);
            run_client(url, prefix, i, name, seconds, fds[1]);
        }
    }
    close(fds[1]);
    while (read(fds[0], &r, sizeof(r)) == sizeof(r)) {
        ops += r.ops;
        errors += r.errors;
        /* the worst client's percentiles: what a slow worker sees */
        if (r.p50_us > w50)
            w50 = r.p50_us;
        if (r.p99_us > w99)
            w99 = r.p99_us;
    }
    close(fds[0]);
    for (i = 0; i < clients; i++)
        waitpid(pids[i], &status, 0);
    elapsed = (double)(jn_mono_ns() - t0) / 1e9;
    printf("  %-8s %10.0f per second  (%" PRId64 " in %.2f s, %d processes, p50 %" PRId64
           " us, p99 %" PRId64 " us, errors %" PRId64 ")\n",
           name, (double)ops / elapsed, ops, elapsed, clients, w50, w99, errors);
    fflush(stdout);
    if (p50)
        *p50 = w50;
    if (p99)
        *p99 = w99;
    return errors > 0 ? -1 : (double)ops / elapsed;
}

int main(int argc, char **argv)
{
    const char *url = NULL, *prefix = "bench:";
    int clients = 8, i;
    double seconds = 5, enq, drain, cycle;
    int64_t p50 = 0, p99 = 0;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
            url = argv[++i];
        else if (strcmp(argv[i], "--clients") == 0 && i + 1 < argc)
            clients = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--prefix") == 0 && i + 1 < argc)
            prefix = argv[++i];
        else {
            fprintf(stderr, "usage: queue_bench --url URL [--clients N] [--seconds S] "
                            "[--prefix P]\n");
            return 2;
        }
    }
    if (url == NULL || clients < 1 || clients > MAX_CLIENTS || !(seconds > 0)) {
        fprintf(stderr, "queue_bench: --url is required; --clients 1..%d; --seconds > 0\n",
                MAX_CLIENTS);
        return 2;
    }
    enq = phase(url, prefix, clients, "enqueue", seconds, NULL, NULL);
    drain = phase(url, prefix, clients, "drain", seconds, NULL, NULL);
    cycle = phase(url, prefix, clients, "cycle", seconds, &p50, &p99);
    if (enq < 0 || drain < 0 || cycle < 0)
        return 1;
    printf("FIGURES enqueue_per_s=%.0f claim_ack_per_s=%.0f jobs_per_s=%.0f cycle_p50_us=%" PRId64
           " cycle_p99_us=%" PRId64 "\n",
           enq, drain, cycle, p50, p99);
    return 0;
}
