/* Schedules (interval, cron, jitter, slots) and the scheduler: a hash table of
 * entries by integration id and a binary min-heap of their next fire times. */
#include "junction/scheduler.h"
#include "junction/clock.h"
#include "junction/error.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS_PER_S 1000LL
#define DEFAULT_SPACING_MS 100
#define DEFAULT_LATE_AFTER_MS 5000

/* ---- durations ---- */

int jn_duration_parse(const char *text, int64_t *ms, char *err, size_t errlen)
{
    const char *p = text;
    int64_t total = 0, n, unit;
    int parts = 0;

    *ms = 0;
    if (text == NULL || *text == '\0')
        return jn_errorf(err, errlen, "empty duration (expected e.g. 30s, 15m, 1h30m, 1d)");
    while (*p != '\0') {
        if (!isdigit((unsigned char)*p))
            return jn_errorf(err, errlen,
                             "invalid duration '%s' at column %d: expected a number (e.g. 30s,"
                             " 15m, 1h30m, 1d)",
                             text, (int)(p - text) + 1);
        n = 0;
        while (isdigit((unsigned char)*p)) {
            if (n > 1000000000LL)
                return jn_errorf(err, errlen, "invalid duration '%s': the number is too large",
                                 text);
            n = n * 10 + (*p++ - '0');
        }
        switch (*p) {
        case 'd':
            unit = 86400;
            break;
        case 'h':
            unit = 3600;
            break;
        case 'm':
            unit = 60;
            break;
        case 's':
            unit = 1;
            break;
        case '\0':
            return jn_errorf(err, errlen,
                             "invalid duration '%s': the number %lld has no unit (d, h, m or s)",
                             text, (long long)n);
        default:
            return jn_errorf(err, errlen,
                             "invalid duration '%s' at column %d: unknown unit '%c' (d, h, m or s)",
                             text, (int)(p - text) + 1, *p);
        }
        p++;
        total += n * unit;
        if (total > 100LL * 366 * 86400)
            return jn_errorf(err, errlen, "invalid duration '%s': longer than 100 years", text);
        parts++;
    }
    *ms = total * MS_PER_S;
    return parts > 0 ? 0 : -1;
}

const char *jn_duration_format(int64_t ms, char *buf, size_t len)
{
    static const struct {
        char unit;
        int64_t s;
    } units[] = {{'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};
    int64_t left = ms / MS_PER_S;
    size_t used = 0, i;
    int n;

    if (len == 0)
        return buf;
    buf[0] = '\0';
    if (left <= 0) {
        snprintf(buf, len, "0s");
        return buf;
    }
    for (i = 0; i < sizeof(units) / sizeof(units[0]) && used < len; i++) {
        if (left < units[i].s)
            continue;
        n = snprintf(buf + used, len - used, "%lld%c", (long long)(left / units[i].s),
                     units[i].unit);
        if (n < 0)
            break;
        used += (size_t)n;
        left %= units[i].s;
    }
    return buf;
}

/* ---- schedules ---- */

static int is_cron_text(const char *text)
{
    const char *p;

    for (p = text; isspace((unsigned char)*p); p++)
        ;
    if (*p == '@')
        return 1;
    for (; *p != '\0'; p++)
        if (isspace((unsigned char)*p)) {
            while (isspace((unsigned char)*p))
                p++;
            return *p != '\0';
        }
    return 0;
}

int jn_schedule_parse(const char *text, jn_schedule_t *out, char *err, size_t errlen)
{
    char why[256];
    int64_t ms;

    memset(out, 0, sizeof(*out));
    if (text == NULL || *text == '\0')
        return jn_errorf(err, errlen,
                         "empty schedule (expected an interval such as 15m or 1h, or a cron"
                         " expression such as '0 * * * *')");
    if (is_cron_text(text)) {
        if (jn_cron_parse(text, &out->u.cron, why, sizeof(why)) != 0)
            return jn_errorf(err, errlen, "invalid schedule '%s': %s", text, why);
        out->kind = JN_SCHEDULE_CRON;
        return 0;
    }
    if (jn_duration_parse(text, &ms, why, sizeof(why)) != 0)
        return jn_errorf(err, errlen, "invalid schedule '%s': %s", text, why);
    if (ms < JN_SCHEDULE_MIN_INTERVAL_MS || ms > JN_SCHEDULE_MAX_INTERVAL_MS)
        return jn_errorf(err, errlen, "invalid schedule '%s': an interval must be from 1s to 366d",
                         text);
    out->kind = JN_SCHEDULE_INTERVAL;
    out->u.every_ms = ms;
    return 0;
}

int jn_schedule_canonical(const char *text, char *buf, size_t len, char *err, size_t errlen)
{
    jn_schedule_t s;
    const char *p;
    size_t used = 0;
    int space = 0;

    if (jn_schedule_parse(text, &s, err, errlen) != 0)
        return -1;
    if (s.kind == JN_SCHEDULE_INTERVAL) {
        jn_duration_format(s.u.every_ms, buf, len);
        return 0;
    }
    for (p = text; isspace((unsigned char)*p); p++)
        ;
    for (; *p != '\0'; p++) {
        if (isspace((unsigned char)*p)) {
            space = 1;
            continue;
        }
        if (used + 3 > len)
            return jn_errorf(err, errlen, "schedule '%.40s...' is too long", text);
        if (space)
            buf[used++] = ' ';
        space = 0;
        buf[used++] = (char)tolower((unsigned char)*p);
    }
    buf[used] = '\0';
    return 0;
}

int jn_schedule_set_jitter(jn_schedule_t *s, int64_t jitter_ms, char *err, size_t errlen)
{
    char a[32], b[32];

    if (jitter_ms < 0)
        return jn_errorf(err, errlen, "the jitter cannot be negative");
    if (s->kind == JN_SCHEDULE_INTERVAL && jitter_ms >= s->u.every_ms)
        return jn_errorf(err, errlen, "the jitter (%s) must be shorter than the interval (%s)",
                         jn_duration_format(jitter_ms, a, sizeof(a)),
                         jn_duration_format(s->u.every_ms, b, sizeof(b)));
    s->jitter_ms = jitter_ms;
    return 0;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* splitmix64's finalizer: every input bit affects every output bit. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

uint64_t jn_schedule_hash(const char *id, int64_t slot_ms)
{
    return mix64(fnv1a(id) ^ mix64((uint64_t)slot_ms + 0x9e3779b97f4a7c15ULL));
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* Interval phase: whole seconds in [0, interval). */
static int64_t phase_ms(const jn_schedule_t *s, const char *id)
{
    int64_t secs = s->u.every_ms / MS_PER_S;

    return (int64_t)(jn_schedule_hash(id, 0) % (uint64_t)secs) * MS_PER_S;
}

int64_t jn_schedule_slot_at_or_before(const jn_schedule_t *s, const char *id, int64_t at_ms)
{
    int64_t phase;

    if (s->kind == JN_SCHEDULE_CRON)
        return jn_cron_prev(&s->u.cron, at_ms);
    phase = phase_ms(s, id);
    return phase + floor_div(at_ms - phase, s->u.every_ms) * s->u.every_ms;
}

int64_t jn_schedule_slot_after(const jn_schedule_t *s, const char *id, int64_t after_ms)
{
    if (s->kind == JN_SCHEDULE_CRON)
        return jn_cron_next(&s->u.cron, after_ms);
    return jn_schedule_slot_at_or_before(s, id, after_ms) + s->u.every_ms;
}

int64_t jn_schedule_fire_ms(const jn_schedule_t *s, const char *id, int64_t slot_ms)
{
    if (s->jitter_ms <= 0)
        return slot_ms;
    return slot_ms + (int64_t)(jn_schedule_hash(id, slot_ms) % (uint64_t)(s->jitter_ms + 1));
}

int jn_schedule_slot_id(const char *id, int64_t slot_ms, char *buf, size_t len)
{
    char when[32];
    int n;

    jn_format_rfc3339(slot_ms, when, sizeof(when));
    n = snprintf(buf, len, "%s@%s", id, when);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* ---- the scheduler ---- */

enum { WHERE_NONE = 0, WHERE_HEAP, WHERE_PENDING };

typedef struct entry {
    struct entry *hnext; /* hash chain */
    jn_schedule_t sched;
    int64_t slot_ms;      /* the slot the next fire is for */
    int64_t last_slot_ms; /* the last slot fired or already enqueued (0: never) */
    uint32_t pos;         /* index in the heap or in the pending list */
    uint8_t where;
    uint8_t catch_up; /* the next fire is a catch-up run */
    char id[];
} entry_t;

/* Heap nodes carry the fire time so that sifting never touches the entries. */
typedef struct {
    int64_t due_ms;
    entry_t *e;
} node_t;

struct jn_scheduler {
    jn_scheduler_opts_t opts;
    entry_t **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
    node_t *heap;
    size_t nheap, heap_cap;
    entry_t **pending;
    size_t npending, pending_cap;
    size_t entry_bytes;
};

jn_scheduler_t *jn_scheduler_create(const jn_scheduler_opts_t *opts)
{
    jn_scheduler_t *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    if (opts != NULL)
        s->opts = *opts;
    if (s->opts.catch_up_spacing_ms <= 0)
        s->opts.catch_up_spacing_ms = DEFAULT_SPACING_MS;
    if (s->opts.late_after_ms <= 0)
        s->opts.late_after_ms = DEFAULT_LATE_AFTER_MS;
    if (s->opts.catch_up_window_ms < 0)
        s->opts.catch_up_window_ms = 0;
    s->nbuckets = 64;
    s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
    if (s->buckets == NULL) {
        free(s);
        return NULL;
    }
    return s;
}

void jn_scheduler_destroy(jn_scheduler_t *s)
{
    size_t i;
    entry_t *e, *next;

    if (s == NULL)
        return;
    for (i = 0; i < s->nbuckets; i++)
        for (e = s->buckets[i]; e != NULL; e = next) {
            next = e->hnext;
            free(e);
        }
    free(s->buckets);
    free(s->heap);
    free(s->pending);
    free(s);
}

/* -- hash table -- */

static entry_t **bucket_of(const jn_scheduler_t *s, const char *id)
{
    return &s->buckets[fnv1a(id) & (s->nbuckets - 1)];
}

static entry_t *find(const jn_scheduler_t *s, const char *id)
{
    entry_t *e;

    for (e = *bucket_of(s, id); e != NULL; e = e->hnext)
        if (strcmp(e->id, id) == 0)
            return e;
    return NULL;
}

/* Doubles the table when it is full on average (one entry per bucket). */
static int grow_table(jn_scheduler_t *s)
{
    size_t n = s->nbuckets * 2, i;
    entry_t **b = calloc(n, sizeof(*b)), *e, *next;

    if (b == NULL)
        return -1;
    for (i = 0; i < s->nbuckets; i++)
        for (e = s->buckets[i]; e != NULL; e = next) {
            next = e->hnext;
            e->hnext = b[fnv1a(e->id) & (n - 1)];
            b[fnv1a(e->id) & (n - 1)] = e;
        }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
    return 0;
}

static void unlink_entry(jn_scheduler_t *s, entry_t *e)
{
    entry_t **p;

    for (p = bucket_of(s, e->id); *p != NULL; p = &(*p)->hnext)
        if (*p == e) {
            *p = e->hnext;
            return;
        }
}

/* -- heap -- */

static int node_less(const node_t *a, const node_t *b)
{
    if (a->due_ms != b->due_ms)
        return a->due_ms < b->due_ms;
    return strcmp(a->e->id, b->e->id) < 0; /* a stable order for equal times */
}

static void heap_set(jn_scheduler_t *s, size_t i, node_t n)
{
    s->heap[i] = n;
    n.e->pos = (uint32_t)i;
}

static void sift_up(jn_scheduler_t *s, size_t i)
{
    node_t n = s->heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!node_less(&n, &s->heap[parent]))
            break;
        heap_set(s, i, s->heap[parent]);
        i = parent;
    }
    heap_set(s, i, n);
}

static void sift_down(jn_scheduler_t *s, size_t i)
{
    node_t n = s->heap[i];

    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= s->nheap)
            break;
        if (child + 1 < s->nheap && node_less(&s->heap[child + 1], &s->heap[child]))
            child++;
        if (!node_less(&s->heap[child], &n))
            break;
        heap_set(s, i, s->heap[child]);
        i = child;
    }
    heap_set(s, i, n);
}

static int heap_push(jn_scheduler_t *s, entry_t *e, int64_t due_ms)
{
    if (s->nheap == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 64;
        node_t *h = realloc(s->heap, cap * sizeof(*h));
        if (h == NULL)
            return -1;
        s->heap = h;
        s->heap_cap = cap;
    }
    e->where = WHERE_HEAP;
    heap_set(s, s->nheap++, (node_t){due_ms, e});
    sift_up(s, s->nheap - 1);
    return 0;
}

static void heap_remove(jn_scheduler_t *s, entry_t *e)
{
    size_t i = e->pos;
    entry_t *moved;

    e->where = WHERE_NONE;
    if (--s->nheap == i)
        return;
    moved = s->heap[s->nheap].e;
    heap_set(s, i, s->heap[s->nheap]);
    sift_up(s, i);
    sift_down(s, moved->pos);
}

/* -- pending list (entries waiting to be planned) -- */

static int pending_push(jn_scheduler_t *s, entry_t *e)
{
    if (s->npending == s->pending_cap) {
        size_t cap = s->pending_cap ? s->pending_cap * 2 : 64;
        entry_t **p = realloc(s->pending, cap * sizeof(*p));
        if (p == NULL)
            return -1;
        s->pending = p;
        s->pending_cap = cap;
    }
    e->where = WHERE_PENDING;
    e->pos = (uint32_t)s->npending;
    s->pending[s->npending++] = e;
    return 0;
}

static void pending_remove(jn_scheduler_t *s, entry_t *e)
{
    size_t i = e->pos;

    e->where = WHERE_NONE;
    s->pending[i] = s->pending[--s->npending];
    s->pending[i]->pos = (uint32_t)i;
}

static void detach(jn_scheduler_t *s, entry_t *e)
{
    if (e->where == WHERE_HEAP)
        heap_remove(s, e);
    else if (e->where == WHERE_PENDING)
        pending_remove(s, e);
}

/* -- public -- */

/* Field by field: padding bytes of copies are unspecified. */
static int same_schedule(const jn_schedule_t *a, const jn_schedule_t *b)
{
    const jn_cron_t *x = &a->u.cron, *y = &b->u.cron;

    if (a->kind != b->kind || a->jitter_ms != b->jitter_ms)
        return 0;
    if (a->kind == JN_SCHEDULE_INTERVAL)
        return a->u.every_ms == b->u.every_ms;
    return x->minutes == y->minutes && x->hours == y->hours && x->mdays == y->mdays &&
           x->months == y->months && x->wdays == y->wdays && x->flags == y->flags;
}

int jn_scheduler_set(jn_scheduler_t *s, const char *id, const jn_schedule_t *sched,
                     int64_t last_slot_ms)
{
    entry_t *e = find(s, id);
    size_t len;

    if (e != NULL) {
        if (last_slot_ms > e->last_slot_ms)
            e->last_slot_ms = last_slot_ms;
        if (same_schedule(&e->sched, sched))
            return 0;
        detach(s, e);
        e->sched = *sched;
        return pending_push(s, e);
    }
    if (s->count >= s->nbuckets && grow_table(s) != 0)
        return -1;
    len = strlen(id);
    e = calloc(1, sizeof(*e) + len + 1);
    if (e == NULL)
        return -1;
    memcpy(e->id, id, len + 1);
    e->sched = *sched;
    e->last_slot_ms = last_slot_ms;
    if (pending_push(s, e) != 0) {
        free(e);
        return -1;
    }
    e->hnext = *bucket_of(s, id);
    *bucket_of(s, id) = e;
    s->count++;
    s->entry_bytes += sizeof(*e) + len + 1;
    return 0;
}

static void drop(jn_scheduler_t *s, entry_t *e)
{
    detach(s, e);
    unlink_entry(s, e);
    s->count--;
    s->entry_bytes -= sizeof(*e) + strlen(e->id) + 1;
    free(e);
}

int jn_scheduler_remove(jn_scheduler_t *s, const char *id)
{
    entry_t *e = find(s, id);

    if (e == NULL)
        return 1;
    drop(s, e);
    return 0;
}

/* The latest slot whose fire time is <= now (-1: none); *next receives the
 * first slot firing after now that is later than the last enqueued one. */
static int64_t latest_fired_slot(const entry_t *e, int64_t now, int64_t *next)
{
    const jn_schedule_t *sc = &e->sched;
    int64_t s0 = jn_schedule_slot_at_or_before(sc, e->id, now), p;

    if (s0 >= 0 && jn_schedule_fire_ms(sc, e->id, s0) > now) {
        *next = s0;
        p = jn_schedule_slot_at_or_before(sc, e->id, s0 - 1);
    } else {
        p = s0;
        *next = jn_schedule_slot_after(sc, e->id, s0 >= 0 ? s0 : now);
    }
    /* a slot already enqueued (its jitter still running) is not planned again */
    if (*next >= 0 && *next <= e->last_slot_ms)
        *next = jn_schedule_slot_after(sc, e->id, e->last_slot_ms);
    return p;
}

void jn_scheduler_plan(jn_scheduler_t *s, int64_t now_ms)
{
    size_t i, missed = 0;
    int64_t window, next, p, due;
    entry_t *e;

    /* first pass: which entries have a missed slot */
    for (i = 0; i < s->npending; i++) {
        e = s->pending[i];
        p = latest_fired_slot(e, now_ms, &next);
        e->catch_up = p >= 0 && (e->last_slot_ms <= 0 || p > e->last_slot_ms);
        e->slot_ms = e->catch_up ? p : next;
        /* The next slot has started, its jitter still running: the catch-up
         * run stands for it, else that slot would run again minutes later. */
        if (e->catch_up && next > p && next <= now_ms)
            e->slot_ms = next;
        missed += e->catch_up;
    }
    window = (int64_t)missed * s->opts.catch_up_spacing_ms;
    if (window > s->opts.catch_up_window_ms)
        window = s->opts.catch_up_window_ms;
    /* second pass: into the heap, catch-ups spread over the window */
    while (s->npending > 0) {
        e = s->pending[--s->npending];
        e->where = WHERE_NONE;
        if (e->catch_up) {
            next = jn_schedule_slot_after(&e->sched, e->id, e->slot_ms);
            due = now_ms + (window > 0 ? (int64_t)(jn_schedule_hash(e->id, e->slot_ms) %
                                                   (uint64_t)(window + 1))
                                       : 0);
            if (next >= 0 && due >= jn_schedule_fire_ms(&e->sched, e->id, next)) {
                e->catch_up = 0;
                e->slot_ms = next;
                due = jn_schedule_fire_ms(&e->sched, e->id, next);
            }
        } else if (e->slot_ms >= 0) {
            due = jn_schedule_fire_ms(&e->sched, e->id, e->slot_ms);
        } else {
            continue; /* a cron expression without a future match: never fires */
        }
        if (heap_push(s, e, due) != 0)
            pending_push(s, e); /* out of memory: try again at the next plan */
    }
}

size_t jn_scheduler_tick(jn_scheduler_t *s, int64_t now_ms, jn_scheduler_fire_fn fn, void *ud)
{
    jn_scheduler_fire_t f;
    entry_t *e;
    int64_t next, p, due;
    size_t fired = 0;

    /* entries due long ago (the process was stopped or stalled) are missed runs */
    while (s->nheap > 0 && s->heap[0].due_ms < now_ms - s->opts.late_after_ms) {
        e = s->heap[0].e;
        heap_remove(s, e);
        if (pending_push(s, e) != 0)
            break;
    }
    if (s->npending > 0)
        jn_scheduler_plan(s, now_ms);
    while (s->nheap > 0 && s->heap[0].due_ms <= now_ms) {
        e = s->heap[0].e;
        f.id = e->id;
        f.slot_ms = e->slot_ms;
        f.fire_ms = s->heap[0].due_ms;
        f.kind = e->catch_up ? JN_FIRE_CATCH_UP : JN_FIRE_SCHEDULED;
        fired++;
        if (fn(ud, &f) != 0) {
            drop(s, e);
            continue;
        }
        if (e->slot_ms > e->last_slot_ms)
            e->last_slot_ms = e->slot_ms;
        e->catch_up = 0;
        next = jn_schedule_slot_after(&e->sched, e->id, e->slot_ms);
        if (next < 0) {
            heap_remove(s, e); /* no further match: keep the entry, never fire it */
            continue;
        }
        due = jn_schedule_fire_ms(&e->sched, e->id, next);
        if (due <= now_ms) {
            /* behind by more than a slot: only the latest one runs */
            p = latest_fired_slot(e, now_ms, &next);
            if (p > e->last_slot_ms) {
                next = p;
                due = now_ms;
            } else {
                due = jn_schedule_fire_ms(&e->sched, e->id, next);
            }
        }
        e->slot_ms = next;
        s->heap[0].due_ms = due;
        sift_down(s, 0);
    }
    return fired;
}

int64_t jn_scheduler_next_fire(const jn_scheduler_t *s)
{
    if (s->npending > 0)
        return INT64_MIN;
    return s->nheap > 0 ? s->heap[0].due_ms : INT64_MAX;
}

size_t jn_scheduler_count(const jn_scheduler_t *s)
{
    return s->count;
}

int jn_scheduler_peek(const jn_scheduler_t *s, const char *id, jn_scheduler_fire_t *out)
{
    entry_t *e = find(s, id);

    if (e == NULL || e->where != WHERE_HEAP)
        return 1;
    out->id = e->id;
    out->slot_ms = e->slot_ms;
    out->fire_ms = s->heap[e->pos].due_ms;
    out->kind = e->catch_up ? JN_FIRE_CATCH_UP : JN_FIRE_SCHEDULED;
    return 0;
}

size_t jn_scheduler_memory(const jn_scheduler_t *s)
{
    return sizeof(*s) + s->entry_bytes + s->nbuckets * sizeof(*s->buckets) +
           s->heap_cap * sizeof(*s->heap) + s->pending_cap * sizeof(*s->pending);
}
