/* Five-field cron expressions, evaluated in UTC.
 *
 *   minute hour day-of-month month day-of-week
 *   0-59   0-23 1-31         1-12  0-7 (0 and 7 are Sunday)
 *
 * Each field is a comma-separated list of `*`, `N`, `A-B`, each optionally
 * followed by `/STEP` (`*` with a step is every STEP-th value of the field's
 * range, `N/STEP` runs from N to the end of the range). Months accept `jan`..`dec`
 * and days of the week `sun`..`sat` (case-insensitive), also in ranges. The
 * macros @yearly (@annually), @monthly, @weekly, @daily (@midnight) and
 * @hourly stand for their usual expressions.
 *
 * Day matching follows Vixie cron: when both day-of-month and day-of-week are
 * restricted (neither field starts with `*`), a day matches if EITHER field
 * matches; otherwise both must match (the `*` one always does). So
 * `0 0 13 * fri` runs on every 13th and on every Friday, while `0 0 * * fri`
 * runs on Fridays only.
 *
 * Times are milliseconds since the Unix epoch; cron has minute resolution, so
 * every match is a whole minute. There is no daylight-saving time in UTC:
 * every minute exists exactly once.
 */
#ifndef JUNCTION_CRON_H
#define JUNCTION_CRON_H

#include <stddef.h>
#include <stdint.h>

/* A parsed expression: one bit per allowed value (24 bytes, no allocation). */
typedef struct {
    uint64_t minutes; /* bits 0..59 */
    uint32_t hours;   /* bits 0..23 */
    uint32_t mdays;   /* bits 1..31 */
    uint16_t months;  /* bits 1..12 */
    uint8_t wdays;    /* bits 0..6, Sunday = 0 */
    uint8_t flags;    /* JN_CRON_*_STAR */
} jn_cron_t;

enum {
    JN_CRON_MDAY_STAR = 1, /* the day-of-month field started with '*' */
    JN_CRON_WDAY_STAR = 2, /* the day-of-week field started with '*' */
};

/* Parses `expr`. On failure returns -1 with a message naming the field, its
 * position (1-based column in expr) and the problem, e.g.
 * "field 3 (day of month) at column 7: 32 is out of range 1-31". An
 * expression that can never match (`0 0 30 2 *`) is refused as well. */
int jn_cron_parse(const char *expr, jn_cron_t *out, char *err, size_t errlen);

/* The first matching minute strictly after `after_ms`, or -1 when there is
 * none within the search horizon (never for an expression jn_cron_parse
 * accepted). */
int64_t jn_cron_next(const jn_cron_t *c, int64_t after_ms);
/* The last matching minute at or before `at_ms`, or -1 (see jn_cron_next). */
int64_t jn_cron_prev(const jn_cron_t *c, int64_t at_ms);
/* 1 when the minute containing `ms` matches. */
int jn_cron_matches(const jn_cron_t *c, int64_t ms);

#endif
