/* The counts of queued jobs and job records for /metrics (api_sampler.h). */
#include "api_sampler.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "junction/clock.h"
#include "junction/log.h"
#include "junction/thread.h"

struct api_sampler {
    uint64_t sync_ns;     /* a scrape waits at most this long for a count */
    int64_t max_age_ms;   /* a background count older than this is taken again */
    jn_store_t *bg_store; /* the thread's (NULL: no thread) */
    jn_queue_t *bg_queue;
    int background;   /* loop: scrapes serve the last count instead of waiting */
    api_sample_t cur; /* loop: what scrapes render */
    uint64_t waited, in_background;
    /* shared with the thread, under mu */
    pthread_t thread;
    int started, stop, want, busy;
    api_sample_t done; /* the thread's last count, not yet handed over */
    int has_done;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* to the thread: a count is wanted, or stop */
    pthread_cond_t done_cv; /* to the loop: a count is done (monotonic clock) */
};

static void sample_clear(api_sample_t *s)
{
    for (size_t i = 0; i < s->njobs; i++) {
        free(s->jobs[i].kind);
        free(s->jobs[i].status);
    }
    free(s->jobs);
    for (size_t i = 0; i < s->nstats; i++)
        free((char *)s->stats[i].provider);
    free(s->stats);
    memset(s, 0, sizeof(*s));
}

static int job_cb(void *ud, const char *kind, const char *status, int64_t count)
{
    api_sample_t *s = ud;
    api_job_count_t *grown;

    if ((grown = realloc(s->jobs, (s->njobs + 1) * sizeof(*grown))) == NULL)
        return -1;
    s->jobs = grown;
    grown += s->njobs;
    grown->kind = strdup(kind ? kind : "");
    grown->status = strdup(status ? status : "");
    grown->count = count;
    s->njobs++;
    return grown->kind == NULL || grown->status == NULL ? -1 : 0;
}

static int stat_cb(void *ud, const jn_queue_stat_t *st)
{
    api_sample_t *s = ud;
    jn_queue_stat_t *grown;
    char *provider;

    if ((grown = realloc(s->stats, (s->nstats + 1) * sizeof(*grown))) == NULL)
        return -1;
    s->stats = grown;
    if ((provider = strdup(st->provider ? st->provider : "")) == NULL)
        return -1;
    s->stats[s->nstats] = *st;
    s->stats[s->nstats++].provider = provider;
    return 0;
}

/* One count with the given store and queue (either thread). */
static void sample_take(jn_store_t *store, jn_queue_t *queue, api_sample_t *out)
{
    uint64_t start = jn_mono_ns();

    sample_clear(out);
    if (store != NULL && jn_store_job_counts(store, job_cb, out) != 0)
        snprintf(out->err, sizeof(out->err), "job counts: %s", jn_store_errmsg(store));
    if (queue != NULL && jn_queue_stats(queue, stat_cb, out) != 0 && out->err[0] == '\0')
        snprintf(out->err, sizeof(out->err), "queue counts: %s", jn_queue_errmsg(queue));
    out->taken_ms = jn_now_ms();
    out->took_ns = jn_mono_ns() - start;
}

static int ask_thread(api_sampler_t *s);

static void *sampler_main(void *arg)
{
    api_sampler_t *s = arg;
    api_sample_t next;

    memset(&next, 0, sizeof(next));
    (void)jn_thread_background();
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->want && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop)
            break;
        s->want = 0;
        pthread_mutex_unlock(&s->mu);
        sample_take(s->bg_store, s->bg_queue, &next);
        next.background = 1;
        pthread_mutex_lock(&s->mu);
        sample_clear(&s->done);
        s->done = next;
        memset(&next, 0, sizeof(next));
        s->has_done = 1;
        s->busy = 0;
        pthread_cond_signal(&s->done_cv);
    }
    pthread_mutex_unlock(&s->mu);
    sample_clear(&next);
    return NULL;
}

api_sampler_t *api_sampler_new(const jn_config_t *cfg, jn_store_t *bg_store, jn_queue_t *bg_queue)
{
    api_sampler_t *s = calloc(1, sizeof(*s));
    pthread_condattr_t attr;

    if (s == NULL)
        return NULL;
    s->sync_ns = (uint64_t)jn_config_int(cfg, "metrics_sample_sync_ms") * 1000000u;
    s->max_age_ms = jn_config_int(cfg, "metrics_sample_max_age_ms");
    s->bg_store = bg_store;
    s->bg_queue = bg_queue;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->done_cv, &attr);
    pthread_condattr_destroy(&attr);
    /* The first count is the thread's, from the start: a process restarted
     * with a large backlog learns that counting is slow before its first
     * scrape, which then waits for it no longer than the limit. */
    if (bg_store != NULL && bg_queue != NULL) {
        pthread_mutex_lock(&s->mu);
        (void)ask_thread(s);
        pthread_mutex_unlock(&s->mu);
    }
    return s;
}

void api_sampler_free(api_sampler_t *s)
{
    if (s == NULL)
        return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    sample_clear(&s->cur);
    sample_clear(&s->done);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->done_cv);
    free(s);
}

static void log_failed(const api_sample_t *x)
{
    if (x->err[0] != '\0')
        jn_log_error("metrics: %s", x->err);
}

/* Loop: asks the thread for a count, starting it on the first call (from
 * api_sampler_new). 0, or -1 when it cannot start (then every count is
 * taken on the loop). */
static int ask_thread(api_sampler_t *s)
{
    if (!s->started) {
        if (pthread_create(&s->thread, NULL, sampler_main, s) != 0)
            return -1;
        s->started = 1;
    }
    s->busy = 1;
    s->want = 1;
    pthread_cond_signal(&s->cv);
    return 0;
}

/* Loop, under mu: the thread's finished count becomes the one served. 1 if
 * there was one. */
static int hand_over(api_sampler_t *s)
{
    if (!s->has_done)
        return 0;
    sample_clear(&s->cur);
    s->cur = s->done;
    memset(&s->done, 0, sizeof(s->done));
    s->has_done = 0;
    log_failed(&s->cur);
    return 1;
}

/* Loop, under mu: waits for the thread's count until `deadline_ns`
 * (monotonic). 1 when it came. */
static int wait_done(api_sampler_t *s, uint64_t deadline_ns)
{
    struct timespec ts = {(time_t)(deadline_ns / 1000000000u), (long)(deadline_ns % 1000000000u)};

    while (!s->has_done && s->busy && jn_mono_ns() < deadline_ns)
        if (pthread_cond_timedwait(&s->done_cv, &s->mu, &ts) != 0)
            break;
    return s->has_done;
}

const api_sample_t *api_sampler_get(api_sampler_t *s, jn_store_t *store, jn_queue_t *queue,
                                    int64_t now_ms)
{
    if (!s->started) { /* no thread: every count on the loop */
        sample_take(store, queue, &s->cur);
        s->waited++;
        log_failed(&s->cur);
        return &s->cur;
    }
    pthread_mutex_lock(&s->mu);
    if (hand_over(s)) {
        /* a count the scrapes did not wait for: back to waiting once one
         * takes under half the limit (the backlog drained) */
        s->in_background++;
        if (s->background)
            s->background = s->cur.took_ns >= s->sync_ns / 2;
    }
    if (!s->background) {
        /* a new count for this scrape (or the first one, still running),
         * waited for no longer than the limit */
        if (!s->busy)
            (void)ask_thread(s); /* the thread runs: this cannot fail */
        if (wait_done(s, jn_mono_ns() + s->sync_ns)) {
            hand_over(s);
            s->cur.background = 0;
            s->waited++;
            s->background = s->cur.took_ns >= s->sync_ns;
        } else {
            s->background = 1; /* slow: served when it is done */
        }
    } else if (!s->busy && now_ms - s->cur.taken_ms >= s->max_age_ms) {
        (void)ask_thread(s);
    }
    pthread_mutex_unlock(&s->mu);
    return &s->cur;
}

void api_sampler_counts(const api_sampler_t *s, uint64_t *waited, uint64_t *in_background)
{
    *waited = s->waited;
    *in_background = s->in_background;
}

int api_sampler_idle(api_sampler_t *s)
{
    int busy;

    pthread_mutex_lock(&s->mu);
    busy = s->busy;
    pthread_mutex_unlock(&s->mu);
    return !busy;
}
