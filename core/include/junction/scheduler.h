/* Schedules and the scheduler: when each integration's runs are due.
 *
 * A schedule is an interval ("15m", "1h", "1h30m", "1d") or a cron expression
 * (five fields or a macro, see cron.h), plus an optional jitter. Its runs
 * happen at *slots*, whole points in time that every process computes
 * identically from the integration id and the schedule alone:
 *
 *   interval   phase + k * interval, where phase = hash(id) mod interval in
 *              whole seconds: integrations with the same interval are spread
 *              evenly instead of all firing on the hour;
 *   cron       every matching minute (UTC).
 *
 * A slot fires at slot + jitter(id, slot), a deterministic offset in
 * [0, jitter] (a hash of the id and the slot time), so the fire time of a slot
 * is the same after a restart and in every scheduler process. The slot id,
 * "<integration id>@<slot time>", is the idempotency key of the run: several
 * schedulers may fire the same slot; the queue enqueues it once.
 *
 * The scheduler keeps one entry per integration in a hash table (by id) and a
 * binary min-heap ordered by the next fire time: a tick pops the due entries,
 * O(log n) each, and costs O(1) when nothing is due.
 *
 * Missed runs. An entry that is added (or found late by a tick, see
 * late_after_ms) whose latest slot already fired in the past without being
 * run (later than last_slot_ms, or never run at all) gets ONE catch-up run for
 * that latest missed slot; older missed slots are dropped. The catch-up runs
 * planned together are spread over a window of
 *   min(catch_up_window_ms, missed * catch_up_spacing_ms)
 * at a deterministic offset per integration and slot, so a restart after
 * downtime does not fire every integration at once while a handful of new
 * integrations still run within a fraction of a second. A catch-up that would
 * fire after the next regular slot is skipped (the regular run comes first).
 * When the latest slot has started but its jitter has not yet elapsed, the
 * catch-up run is that slot's run: a new integration runs once now, not now
 * and again a few minutes later when the jitter ends.
 *
 * Not thread-safe: one scheduler per thread. Times are milliseconds since the
 * Unix epoch (wall clock, UTC); the caller passes `now`, so tests drive the
 * clock.
 */
#ifndef JUNCTION_SCHEDULER_H
#define JUNCTION_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include "junction/cron.h"

typedef enum { JN_SCHEDULE_INTERVAL = 1, JN_SCHEDULE_CRON = 2 } jn_schedule_kind_t;

typedef struct {
    int64_t jitter_ms; /* 0: none */
    union {
        int64_t every_ms; /* JN_SCHEDULE_INTERVAL: a whole number of seconds */
        jn_cron_t cron;   /* JN_SCHEDULE_CRON */
    } u;
    uint8_t kind; /* jn_schedule_kind_t */
} jn_schedule_t;

#define JN_SCHEDULE_MIN_INTERVAL_MS 1000LL
#define JN_SCHEDULE_MAX_INTERVAL_MS (366LL * 86400000LL)

/* A duration: one or more <number><unit> with units d, h, m, s ("90s",
 * "1h30m"). 0 ("0s") is accepted; the caller checks the range. -1 with the
 * reason in err. */
int jn_duration_parse(const char *text, int64_t *ms, char *err, size_t errlen);
/* Canonical spelling of a duration of whole seconds: "1h30m", "45s", "0s". */
const char *jn_duration_format(int64_t ms, char *buf, size_t len);

/* Parses an interval (a duration from 1 s to 366 d) or a cron expression
 * (recognized by its spaces or a leading '@'). The jitter is 0. On failure -1
 * with a message that starts with the schedule as given, e.g.
 * "invalid schedule '0 0 32 * *': field 3 (day of month) at column 5: 32 is
 * out of range 1-31". */
int jn_schedule_parse(const char *text, jn_schedule_t *out, char *err, size_t errlen);
/* The canonical text of `text` (intervals respelled, cron fields separated by
 * one space) into buf; -1 with the reason when it does not parse. */
int jn_schedule_canonical(const char *text, char *buf, size_t len, char *err, size_t errlen);
/* Sets the jitter. For an interval it must be shorter than the interval; for
 * cron it should be shorter than the shortest gap between two matches (not
 * checked: slots then fire in slot order, late ones at once). */
int jn_schedule_set_jitter(jn_schedule_t *s, int64_t jitter_ms, char *err, size_t errlen);

/* A 64-bit hash of the integration id and a slot time, the same in every
 * process and across restarts (FNV-1a, then a 64-bit finalizer). */
uint64_t jn_schedule_hash(const char *id, int64_t slot_ms);
/* The last slot at or before at_ms, the first slot after after_ms; -1 when a
 * cron expression has none within its search horizon. */
int64_t jn_schedule_slot_at_or_before(const jn_schedule_t *s, const char *id, int64_t at_ms);
int64_t jn_schedule_slot_after(const jn_schedule_t *s, const char *id, int64_t after_ms);
/* When the slot fires: slot + jitter offset. */
int64_t jn_schedule_fire_ms(const jn_schedule_t *s, const char *id, int64_t slot_ms);
/* "<id>@<RFC 3339 time of the slot>", the slot's idempotency key; -1 when
 * buf is too small. */
int jn_schedule_slot_id(const char *id, int64_t slot_ms, char *buf, size_t len);

/* ---- the scheduler ---- */

typedef struct jn_scheduler jn_scheduler_t;

typedef struct {
    int64_t catch_up_window_ms;  /* longest spread of catch-up runs; 0: fire them at once */
    int64_t catch_up_spacing_ms; /* window per missed run; 0: 100 ms (10 runs a second) */
    int64_t late_after_ms;       /* a tick treats entries due longer ago as missed; 0: 5 s */
} jn_scheduler_opts_t;

typedef enum { JN_FIRE_SCHEDULED = 0, JN_FIRE_CATCH_UP = 1 } jn_fire_kind_t;

typedef struct {
    const char *id; /* valid during the call */
    int64_t slot_ms;
    int64_t fire_ms; /* when it was planned to fire (<= now) */
    jn_fire_kind_t kind;
} jn_scheduler_fire_t;

/* Return 0 to keep the schedule (its next slot is planned), 1 to drop the
 * entry (the integration is gone or disabled). The callback must not call
 * the scheduler. */
typedef int (*jn_scheduler_fire_fn)(void *ud, const jn_scheduler_fire_t *fire);

/* opts may be NULL (defaults, no catch-up window). NULL when out of memory. */
jn_scheduler_t *jn_scheduler_create(const jn_scheduler_opts_t *opts);
void jn_scheduler_destroy(jn_scheduler_t *s);
/* Adds or replaces the schedule of `id`. last_slot_ms: the last slot of this
 * integration already enqueued (0: never run). Replacing a schedule with an
 * identical one changes nothing; otherwise the entry is planned again at the
 * next jn_scheduler_plan or jn_scheduler_tick. 0, or -1 when out of memory. */
int jn_scheduler_set(jn_scheduler_t *s, const char *id, const jn_schedule_t *sched,
                     int64_t last_slot_ms);
/* 0, or 1 when there is no such entry. */
int jn_scheduler_remove(jn_scheduler_t *s, const char *id);
/* Plans the entries set since the last plan (missed runs spread together). */
void jn_scheduler_plan(jn_scheduler_t *s, int64_t now_ms);
/* Plans pending entries, then calls fn for every entry whose fire time is
 * <= now_ms, in fire-time order, and plans its next slot. Returns the number
 * of calls. */
size_t jn_scheduler_tick(jn_scheduler_t *s, int64_t now_ms, jn_scheduler_fire_fn fn, void *ud);
/* The earliest fire time; INT64_MIN when entries wait to be planned,
 * INT64_MAX when there are none. */
int64_t jn_scheduler_next_fire(const jn_scheduler_t *s);
size_t jn_scheduler_count(const jn_scheduler_t *s);
/* The next fire of `id` (planned entries only): 0, or 1 when unknown or not
 * planned yet. out->id points into the scheduler. */
int jn_scheduler_peek(const jn_scheduler_t *s, const char *id, jn_scheduler_fire_t *out);
/* Bytes the scheduler has allocated (entries, heap, hash table). */
size_t jn_scheduler_memory(const jn_scheduler_t *s);

#endif
