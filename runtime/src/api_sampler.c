/* The counts of queued jobs and job records for /metrics (api_sampler.h). */
#include "api_sampler.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "junction/clock.h"
#include "junction/log.h"
#include "junction/thread.h"

struct api_sampler {
    uint64_t sync_ns;     /* a count on the loop must take less than this */
    int64_t max_age_ms;   /* a background count older than this is taken again */
    jn_store_t *bg_store; /* the thread's (NULL: no thread) */
    jn_queue_t *bg_queue;
    int background;   /* loop: counts are taken by the thread */
    int probing;      /* loop: the thread's first count, started with the sampler */
    api_sample_t cur; /* loop: what scrapes render */
    uint64_t on_loop, in_background;
    /* shared with the thread, under mu */
    pthread_t thread;
    int started, stop, want, busy;
    api_sample_t done; /* the thread's last count, not yet handed over */
    int has_done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
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
    }
    pthread_mutex_unlock(&s->mu);
    sample_clear(&next);
    return NULL;
}

api_sampler_t *api_sampler_new(const jn_config_t *cfg, jn_store_t *bg_store, jn_queue_t *bg_queue)
{
    api_sampler_t *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->sync_ns = (uint64_t)jn_config_int(cfg, "metrics_sample_sync_ms") * 1000000u;
    s->max_age_ms = jn_config_int(cfg, "metrics_sample_max_age_ms");
    s->bg_store = bg_store;
    s->bg_queue = bg_queue;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    /* The first count is the thread's, from the start: a process restarted
     * with a large backlog learns that counting is slow without making the
     * first scrape wait for it. */
    if (bg_store != NULL && bg_queue != NULL) {
        pthread_mutex_lock(&s->mu);
        s->probing = ask_thread(s) == 0;
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
    free(s);
}

static void log_failed(const api_sample_t *x)
{
    if (x->err[0] != '\0')
        jn_log_error("metrics: %s", x->err);
}

/* Loop: asks the thread for a count (started on first use). 0, or -1 when
 * it cannot run (the count is then taken on the loop). */
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
    s->in_background++;
    log_failed(&s->cur);
    return 1;
}

const api_sample_t *api_sampler_get(api_sampler_t *s, jn_store_t *store, jn_queue_t *queue,
                                    int64_t now_ms)
{
    int busy = 0;

    if (s->background || s->probing) {
        pthread_mutex_lock(&s->mu);
        if (hand_over(s)) {
            /* slow: stay (or go) in the background, after the thread's first
             * count too; cheap again (the backlog drained): back to the loop */
            s->background =
                s->probing ? s->cur.took_ns >= s->sync_ns : s->cur.took_ns >= s->sync_ns / 2;
        } else if (s->probing) {
            s->background = 1; /* the first count is still running: slow */
        }
        s->probing = 0;
        busy = s->busy;
        if (s->background && !busy && now_ms - s->cur.taken_ms >= s->max_age_ms &&
            ask_thread(s) != 0)
            s->background = 0;
        pthread_mutex_unlock(&s->mu);
        if (s->background || busy)
            return &s->cur;
    }
    sample_take(store, queue, &s->cur);
    s->on_loop++;
    log_failed(&s->cur);
    if (s->cur.took_ns >= s->sync_ns && s->bg_store != NULL && s->bg_queue != NULL)
        s->background = 1;
    return &s->cur;
}

void api_sampler_counts(const api_sampler_t *s, uint64_t *on_loop, uint64_t *in_background)
{
    *on_loop = s->on_loop;
    *in_background = s->in_background;
}
