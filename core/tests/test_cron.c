#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "junction/cron.h"

/* "YYYY-MM-DD HH:MM" (UTC) in milliseconds. */
static int64_t at(const char *text)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    if (sscanf(text, "%d-%d-%d %d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min) != 5)
        fail_msg("bad time literal '%s'", text);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000;
}

static const char *fmt(int64_t ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (ms < 0 && ms % 1000 != 0)
        t--;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M", &tm);
    return buf;
}

static jn_cron_t parse_ok(const char *expr)
{
    jn_cron_t c;
    char err[256] = "";

    if (jn_cron_parse(expr, &c, err, sizeof(err)) != 0)
        fail_msg("'%s' did not parse: %s", expr, err);
    return c;
}

static void parse_fails(const char *expr, const char *expect)
{
    jn_cron_t c;
    char err[256] = "";

    assert_int_equal(jn_cron_parse(expr, &c, err, sizeof(err)), -1);
    if (strstr(err, expect) == NULL)
        fail_msg("'%s': expected an error containing \"%s\", got \"%s\"", expr, expect, err);
}

/* next(after) is `expect`, and prev of it is itself. */
static void next_is(const char *expr, const char *after, const char *expect)
{
    jn_cron_t c = parse_ok(expr);
    int64_t got = jn_cron_next(&c, at(after));
    char a[32], b[32];

    if (got != at(expect))
        fail_msg("'%s' after %s: expected %s, got %s", expr, after, expect, fmt(got, a, sizeof(a)));
    if (jn_cron_prev(&c, got) != got)
        fail_msg("'%s': prev(%s) is %s", expr, fmt(got, a, sizeof(a)),
                 fmt(jn_cron_prev(&c, got), b, sizeof(b)));
    assert_true(jn_cron_matches(&c, got));
}

static void prev_is(const char *expr, const char *at_text, const char *expect)
{
    jn_cron_t c = parse_ok(expr);
    int64_t got = jn_cron_prev(&c, at(at_text));
    char a[32];

    if (got != at(expect))
        fail_msg("'%s' at or before %s: expected %s, got %s", expr, at_text, expect,
                 fmt(got, a, sizeof(a)));
}

/* ---- parse errors name the field and its column ---- */

static void test_field_count(void **state)
{
    (void)state;
    parse_fails("", "expected 5 fields");
    parse_fails("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4");
    parse_fails("* * * * * *", "more than 5 fields at column 11");
    parse_fails(NULL, "no cron expression");
}

static void test_out_of_range_with_position(void **state)
{
    (void)state;
    parse_fails("60 * * * *", "field 1 (minute) at column 1: 60 is out of range 0-59");
    parse_fails("0 24 * * *", "field 2 (hour) at column 3: 24 is out of range 0-23");
    parse_fails("0 0 32 * *", "field 3 (day of month) at column 5: 32 is out of range 1-31");
    parse_fails("0 0 0 * *", "field 3 (day of month) at column 5: 0 is out of range 1-31");
    parse_fails("0 0 * 13 *", "field 4 (month) at column 7: 13 is out of range 1-12");
    parse_fails("0 0 * * 8", "field 5 (day of week) at column 9: 8 is out of range 0-7");
    parse_fails("0  0 1,99 * *", "field 3 (day of month) at column 8: 99 is out of range");
    parse_fails("99999999999 * * * *",
                "field 1 (minute) at column 1: 99999999999 is out of range 0-59");
}

static void test_syntax_errors(void **state)
{
    (void)state;
    parse_fails("5-3 * * * *", "field 1 (minute) at column 1: range 5-3 is reversed");
    parse_fails("*/0 * * * *", "field 1 (minute) at column 3: step 0 is out of range 1-59");
    parse_fails("*/x * * * *", "field 1 (minute) at column 3: a step must be a number");
    parse_fails("0 */25 * * *", "field 2 (hour) at column 5: step 25 is out of range 1-23");
    parse_fails("1,,2 * * * *", "field 1 (minute) at column 3: empty list item");
    parse_fails("1, * * * *", "field 1 (minute) at column 3: empty list item");
    parse_fails("0 0 * foo *", "field 4 (month) at column 7: unknown name 'foo' (jan..dec)");
    parse_fails("0 0 * * funday", "field 5 (day of week) at column 9: unknown name 'funday'");
    parse_fails("a * * * *", "field 1 (minute) at column 1: 'a' is not a number");
    parse_fails("1-5x * * * *", "field 1 (minute) at column 4: unexpected 'x'");
    parse_fails("0 0 * * mon-", "field 5 (day of week) at column 13: '' is not a number or a name");
    parse_fails("@reboot", "unknown macro '@reboot'");
    parse_fails("@daily extra", "unknown macro");
}

static void test_never_matching_refused(void **state)
{
    (void)state;
    parse_fails("0 0 30 2 *", "never runs");
    parse_fails("0 0 31 4,6,9,11 *", "never runs");
    /* reachable, if rarely */
    parse_ok("0 0 29 2 *");
    parse_ok("0 0 31 2,3 *");
    /* with both day fields restricted the weekday alone can match */
    parse_ok("0 0 30 2 mon");
}

static void test_macros(void **state)
{
    (void)state;
    next_is("@hourly", "2026-03-10 10:07", "2026-03-10 11:00");
    next_is("@daily", "2026-03-10 10:07", "2026-03-11 00:00");
    next_is("@midnight", "2026-03-10 10:07", "2026-03-11 00:00");
    next_is("@weekly", "2026-01-01 10:00", "2026-01-04 00:00"); /* a Sunday */
    next_is("@monthly", "2026-01-31 23:59", "2026-02-01 00:00");
    next_is("@yearly", "2026-06-01 00:00", "2027-01-01 00:00");
    next_is("@annually", "2026-06-01 00:00", "2027-01-01 00:00");
    next_is("  @HOURLY  ", "2026-03-10 10:07", "2026-03-10 11:00");
}

/* ---- next and prev ---- */

static void test_steps_ranges_lists(void **state)
{
    (void)state;
    next_is("*/15 * * * *", "2026-03-10 10:07", "2026-03-10 10:15");
    next_is("*/15 * * * *", "2026-03-10 10:45", "2026-03-10 11:00");
    next_is("*/15 * * * *", "2026-03-10 10:15", "2026-03-10 10:30"); /* strictly after */
    next_is("5-10/2 * * * *", "2026-03-10 10:07", "2026-03-10 10:09");
    next_is("5-10/2 * * * *", "2026-03-10 10:09", "2026-03-10 11:05");
    next_is("7/20 * * * *", "2026-03-10 10:28", "2026-03-10 10:47");
    next_is("0 1/10 * * *", "2026-03-10 12:00", "2026-03-10 21:00");
    next_is("0 0 1/10 * *", "2026-03-21 00:00", "2026-03-31 00:00");
    next_is("0 0 1/10 * *", "2026-04-21 00:00", "2026-05-01 00:00"); /* April has no 31st */
    next_is("15,45 9,17 * * *", "2026-03-10 09:50", "2026-03-10 17:15");
    next_is("* * * * *", "2026-03-10 10:07", "2026-03-10 10:08");
    next_is("0 0 1 jan,JUL *", "2026-02-01 00:00", "2026-07-01 00:00");
    next_is("0 0 1 feb-apr *", "2026-04-02 00:00", "2027-02-01 00:00");
    next_is("30 9 * * mon-fri", "2026-01-02 10:00", "2026-01-05 09:30"); /* Fri -> Mon */
}

static void test_year_boundaries(void **state)
{
    (void)state;
    next_is("0 0 1 1 *", "2026-12-31 23:59", "2027-01-01 00:00");
    next_is("59 23 31 12 *", "2026-12-31 23:58", "2026-12-31 23:59");
    prev_is("59 23 31 12 *", "2026-06-01 00:00", "2025-12-31 23:59");
    prev_is("0 0 1 1 *", "1970-01-01 00:00", "1970-01-01 00:00");
    prev_is("0 0 1 1 *", "1969-12-31 23:59", "1969-01-01 00:00");
}

static void test_february_29(void **state)
{
    (void)state;
    next_is("0 0 29 2 *", "2025-03-01 00:00", "2028-02-29 00:00");
    next_is("0 0 29 2 *", "2024-02-28 12:00", "2024-02-29 00:00");
    prev_is("0 0 29 2 *", "2027-12-31 00:00", "2024-02-29 00:00");
    /* 2100 is not a leap year: the next 29 February after 2096 is in 2104 */
    next_is("0 12 29 2 *", "2096-03-01 00:00", "2104-02-29 12:00");
    prev_is("0 12 29 2 *", "2104-02-28 00:00", "2096-02-29 12:00");
    /* 2000 is a leap year (divisible by 400) */
    next_is("0 0 29 2 *", "1999-01-01 00:00", "2000-02-29 00:00");
    /* the last day of February, whatever the year */
    next_is("0 0 28,29 2 *", "2026-02-27 00:00", "2026-02-28 00:00");
}

static void test_day_of_month_or_day_of_week(void **state)
{
    (void)state;
    /* both restricted: either matches (2026-01-02 is a Friday, the 13th a Tuesday) */
    next_is("0 0 13 * fri", "2026-01-01 00:00", "2026-01-02 00:00");
    next_is("0 0 13 * fri", "2026-01-09 00:00", "2026-01-13 00:00");
    next_is("0 0 13 * fri", "2026-01-13 00:00", "2026-01-16 00:00");
    next_is("0 0 30 2 mon", "2026-02-01 00:00", "2026-02-02 00:00");
    /* day-of-week alone */
    next_is("0 0 * * fri", "2026-01-02 00:00", "2026-01-09 00:00");
    /* day-of-month alone */
    next_is("0 0 13 * *", "2026-01-01 00:00", "2026-01-13 00:00");
    /* Vixie: a field starting with '*' counts as unrestricted even with a step,
     * so both must match: odd days that are Fridays */
    next_is("0 0 */2 * fri", "2026-01-01 00:00", "2026-01-09 00:00");
    /* 0 and 7 are both Sunday; 5-7 is Friday to Sunday */
    next_is("0 0 * * 7", "2026-01-01 00:00", "2026-01-04 00:00");
    next_is("0 0 * * 0", "2026-01-01 00:00", "2026-01-04 00:00");
    next_is("0 0 * * 5-7", "2026-01-03 00:00", "2026-01-04 00:00");
    next_is("0 0 * * 5-7", "2026-01-04 00:00", "2026-01-09 00:00");
    next_is("0 0 * * sat,sun", "2026-01-05 00:00", "2026-01-10 00:00");
}

static void test_prev_inclusive(void **state)
{
    jn_cron_t c = parse_ok("*/10 * * * *");

    (void)state;
    assert_int_equal(jn_cron_prev(&c, at("2026-03-10 10:20")), at("2026-03-10 10:20"));
    assert_int_equal(jn_cron_prev(&c, at("2026-03-10 10:20") + 59999), at("2026-03-10 10:20"));
    assert_int_equal(jn_cron_prev(&c, at("2026-03-10 10:20") - 1), at("2026-03-10 10:10"));
    assert_int_equal(jn_cron_next(&c, at("2026-03-10 10:20") - 1), at("2026-03-10 10:20"));
    assert_true(jn_cron_matches(&c, at("2026-03-10 10:20") + 30000));
    assert_false(jn_cron_matches(&c, at("2026-03-10 10:21")));
}

/* ---- against a brute-force matcher ---- */

static int brute_matches(const jn_cron_t *c, int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    int md, wd;

    gmtime_r(&t, &tm);
    if (!((c->minutes >> tm.tm_min) & 1) || !((c->hours >> tm.tm_hour) & 1) ||
        !((c->months >> (tm.tm_mon + 1)) & 1))
        return 0;
    md = (c->mdays >> tm.tm_mday) & 1;
    wd = (c->wdays >> tm.tm_wday) & 1;
    if ((c->flags & JN_CRON_MDAY_STAR) || (c->flags & JN_CRON_WDAY_STAR))
        return md && wd;
    return md || wd;
}

static uint64_t rng_state = 0x853c49e6748fea9bULL;

static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}

static void random_field(char *out, size_t len, int lo, int hi)
{
    int a = lo + (int)rnd((unsigned)(hi - lo + 1)), b = lo + (int)rnd((unsigned)(hi - lo + 1));

    if (a > b) {
        int t = a;
        a = b;
        b = t;
    }
    switch (rnd(6)) {
    case 0:
        snprintf(out, len, "*");
        break;
    case 1:
        snprintf(out, len, "*/%d", 1 + (int)rnd(7));
        break;
    case 2:
        snprintf(out, len, "%d", a);
        break;
    case 3:
        snprintf(out, len, "%d-%d", a, b);
        break;
    case 4:
        snprintf(out, len, "%d-%d/%d", a, b, 1 + (int)rnd(4));
        break;
    default:
        snprintf(out, len, "%d,%d", a, b);
        break;
    }
}

static void test_matches_brute_force(void **state)
{
    char expr[192], f[5][32], err[256];
    static const int lo[5] = {0, 0, 1, 1, 0}, hi[5] = {59, 23, 31, 12, 7};
    int64_t start = at("2027-12-30 22:00"), t, want, got, brute;
    int i, k, checked = 0;
    jn_cron_t c;

    (void)state;
    for (i = 0; i < 400; i++) {
        for (k = 0; k < 5; k++)
            random_field(f[k], sizeof(f[k]), lo[k], hi[k]);
        /* keep most expressions frequent enough to brute-force over 4 days */
        if (i % 3 != 0)
            snprintf(f[3], sizeof(f[3]), "*");
        snprintf(expr, sizeof(expr), "%s %s %s %s %s", f[0], f[1], f[2], f[3], f[4]);
        if (jn_cron_parse(expr, &c, err, sizeof(err)) != 0)
            continue; /* e.g. never-matching day/month pairs */
        /* the first match after `start` by stepping minute by minute */
        brute = -1;
        for (t = start + 60000; t < start + 4LL * 86400000; t += 60000)
            if (brute_matches(&c, t)) {
                brute = t;
                break;
            }
        if (brute < 0)
            continue;
        got = jn_cron_next(&c, start);
        if (got != brute)
            fail_msg("'%s': next after 2027-12-30 22:00 is %lld, brute force %lld", expr,
                     (long long)got, (long long)brute);
        want = jn_cron_prev(&c, brute + 59999);
        assert_int_equal(want, brute);
        assert_true(jn_cron_prev(&c, brute - 1) < brute);
        checked++;
    }
    assert_true(checked > 150);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_field_count),
        cmocka_unit_test(test_out_of_range_with_position),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_never_matching_refused),
        cmocka_unit_test(test_macros),
        cmocka_unit_test(test_steps_ranges_lists),
        cmocka_unit_test(test_year_boundaries),
        cmocka_unit_test(test_february_29),
        cmocka_unit_test(test_day_of_month_or_day_of_week),
        cmocka_unit_test(test_prev_inclusive),
        cmocka_unit_test(test_matches_brute_force),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
