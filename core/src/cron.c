/* Five-field cron expressions in UTC: parsing into bit sets, and the next and
 * previous matching minute by walking days (skipping whole months that do not
 * match) and then the hour and minute bits of one day. */
#include "junction/cron.h"
#include "junction/error.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MS_PER_MIN 60000LL
#define MS_PER_DAY 86400000LL
#define MIN_PER_DAY 1440
/* Walks never go further than one Gregorian cycle: every (month, day,
 * weekday) combination that exists occurs within it. */
#define HORIZON_DAYS 146097

typedef struct {
    const char *name;
    int min, max;
    const char *const *names; /* names[i] is the value min + i, or NULL */
} field_t;

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                          "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const wday_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const field_t fields[5] = {
    {"minute", 0, 59, NULL},           {"hour", 0, 23, NULL},
    {"day of month", 1, 31, NULL},     {"month", 1, 12, month_names},
    {"day of week", 0, 7, wday_names}, /* 7 is Sunday again */
};

static const struct {
    const char *name;
    const char *expr;
} macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

static const unsigned month_days[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

/* ---- parsing ---- */

typedef struct {
    const char *expr; /* for column numbers */
    int field;        /* 0..4 */
    char *err;
    size_t errlen;
} parse_t;

/* "field 3 (day of month) at column 7: <what>"; returns -1. */
static int field_error(parse_t *p, const char *at, const char *what)
{
    return jn_errorf(p->err, p->errlen, "field %d (%s) at column %d: %s", p->field + 1,
                     fields[p->field].name, (int)(at - p->expr) + 1, what);
}

/* "jan..dec" or "sun..sat" for messages about names. */
static const char *name_range(int field)
{
    return field == 3 ? "jan..dec" : "sun..sat";
}

/* Digits, at most 4 of them are significant (larger values are out of range anyway). */
static long parse_digits(const char **s, const char *end)
{
    long v = 0;

    while (*s < end && isdigit((unsigned char)**s)) {
        if (v < 10000)
            v = v * 10 + (**s - '0');
        (*s)++;
    }
    return v;
}

/* One value: digits or a name. Advances *s past it. */
static int parse_value(parse_t *p, const char **s, const char *end, int *out)
{
    const field_t *f = &fields[p->field];
    const char *start = *s, *q = *s;
    char token[16], what[128];
    long v;
    int i;

    if (q < end && isdigit((unsigned char)*q)) {
        v = parse_digits(&q, end);
        if (v < f->min || v > f->max) {
            /* the digits as written: a huge value was clamped while reading */
            snprintf(what, sizeof(what), "%.*s is out of range %d-%d",
                     (int)(q - start > 12 ? 12 : q - start), start, f->min, f->max);
            return field_error(p, start, what);
        }
        *out = (int)v;
        *s = q;
        return 0;
    }
    while (q < end && isalpha((unsigned char)*q))
        q++;
    if (q == start || f->names == NULL || (size_t)(q - start) >= sizeof(token)) {
        const char *stop = start;
        while (stop < end && *stop != ',' && *stop != '-' && *stop != '/')
            stop++;
        snprintf(token, sizeof(token), "%.*s", (int)(stop - start > 12 ? 12 : stop - start), start);
        if (f->names != NULL)
            snprintf(what, sizeof(what), "'%s' is not a number or a name (%s)", token,
                     name_range(p->field));
        else
            snprintf(what, sizeof(what), "'%s' is not a number", token);
        return field_error(p, start, what);
    }
    snprintf(token, sizeof(token), "%.*s", (int)(q - start), start);
    for (i = 0; f->names[i] != NULL; i++) {
        if (strcasecmp(token, f->names[i]) == 0) {
            *out = f->min + i;
            *s = q;
            return 0;
        }
    }
    snprintf(what, sizeof(what), "unknown name '%s' (%s)", token, name_range(p->field));
    return field_error(p, start, what);
}

/* Sets bits lo..hi (every step-th) in *bits; day of week 7 is folded onto 0. */
static void set_range(int field, uint64_t *bits, int lo, int hi, int step)
{
    int v;

    for (v = lo; v <= hi; v += step)
        *bits |= 1ULL << (field == 4 && v == 7 ? 0 : v);
}

/* One comma-separated item: *, N, A-B, each with an optional /STEP. */
static int parse_item(parse_t *p, const char *s, const char *end, uint64_t *bits)
{
    const field_t *f = &fields[p->field];
    const char *item = s, *at;
    int top = f->max == 7 ? 6 : f->max; /* day of week: 7 only as a value */
    int lo, hi, step = 1, star = 0;
    char what[128];
    long v;

    if (s == end)
        return field_error(p, s, "empty list item");
    if (*s == '*') {
        star = 1;
        lo = f->min;
        hi = top;
        s++;
    } else {
        if (parse_value(p, &s, end, &lo) != 0)
            return -1;
        hi = lo;
        if (s < end && *s == '-') {
            s++;
            if (parse_value(p, &s, end, &hi) != 0)
                return -1;
            if (hi < lo) {
                snprintf(what, sizeof(what), "range %d-%d is reversed", lo, hi);
                return field_error(p, item, what);
            }
        }
    }
    if (s < end && *s == '/') {
        at = ++s;
        if (s == end || !isdigit((unsigned char)*s))
            return field_error(p, at, "a step must be a number");
        v = parse_digits(&s, end);
        if (v < 1 || v > f->max) {
            snprintf(what, sizeof(what), "step %ld is out of range 1-%d", v, f->max);
            return field_error(p, at, what);
        }
        step = (int)v;
        /* "N/STEP" runs from N to the end of the field's range */
        if (!star && hi == lo)
            hi = top;
    }
    if (s != end) {
        snprintf(what, sizeof(what), "unexpected '%c'", *s);
        return field_error(p, s, what);
    }
    set_range(p->field, bits, lo, hi, step);
    return 0;
}

static int parse_field(parse_t *p, const char *s, const char *end, uint64_t *bits)
{
    const char *comma;

    *bits = 0;
    for (;;) {
        comma = memchr(s, ',', (size_t)(end - s));
        if (parse_item(p, s, comma ? comma : end, bits) != 0)
            return -1;
        if (comma == NULL)
            return 0;
        s = comma + 1;
    }
}

/* With day-of-month restricted and day-of-week not, some allowed month must
 * have an allowed day, or the expression never runs. */
static int check_reachable(const jn_cron_t *c, const char *expr, char *err, size_t errlen)
{
    int m, d;

    if ((c->flags & JN_CRON_MDAY_STAR) || !(c->flags & JN_CRON_WDAY_STAR))
        return 0;
    for (m = 1; m <= 12; m++) {
        if (!(c->months & (1u << m)))
            continue;
        for (d = 1; d <= (int)month_days[m]; d++)
            if (c->mdays & (1u << d))
                return 0;
    }
    return jn_errorf(err, errlen, "'%s' never runs: no allowed month has the allowed days of month",
                     expr);
}

int jn_cron_parse(const char *expr, jn_cron_t *out, char *err, size_t errlen)
{
    const char *s, *start[5], *end[5];
    parse_t p = {expr, 0, err, errlen};
    uint64_t bits[5];
    size_t i;
    int n = 0;

    memset(out, 0, sizeof(*out));
    if (expr == NULL)
        return jn_errorf(err, errlen, "no cron expression given");
    for (s = expr; isspace((unsigned char)*s); s++)
        ;
    if (*s == '@') {
        for (i = 0; i < sizeof(macros) / sizeof(macros[0]); i++) {
            size_t len = strlen(macros[i].name);
            if (strncasecmp(s, macros[i].name, len) == 0 &&
                (s[len] == '\0' || isspace((unsigned char)s[len]))) {
                const char *rest = s + len;
                while (isspace((unsigned char)*rest))
                    rest++;
                if (*rest == '\0')
                    return jn_cron_parse(macros[i].expr, out, err, errlen);
            }
        }
        return jn_errorf(err, errlen,
                         "unknown macro '%.20s' (expected @yearly, @annually, @monthly, @weekly,"
                         " @daily, @midnight or @hourly)",
                         s);
    }
    while (*s != '\0') {
        if (n == 5)
            return jn_errorf(err, errlen,
                             "more than 5 fields at column %d (expected minute hour"
                             " day-of-month month day-of-week)",
                             (int)(s - expr) + 1);
        start[n] = s;
        while (*s != '\0' && !isspace((unsigned char)*s))
            s++;
        end[n++] = s;
        while (isspace((unsigned char)*s))
            s++;
    }
    if (n != 5)
        return jn_errorf(err, errlen,
                         "expected 5 fields (minute hour day-of-month month day-of-week), got %d",
                         n);
    for (p.field = 0; p.field < 5; p.field++)
        if (parse_field(&p, start[p.field], end[p.field], &bits[p.field]) != 0)
            return -1;
    out->minutes = bits[0];
    out->hours = (uint32_t)bits[1];
    out->mdays = (uint32_t)bits[2];
    out->months = (uint16_t)bits[3];
    out->wdays = (uint8_t)bits[4];
    if (*start[2] == '*')
        out->flags |= JN_CRON_MDAY_STAR;
    if (*start[4] == '*')
        out->flags |= JN_CRON_WDAY_STAR;
    return check_reachable(out, expr, err, errlen);
}

/* ---- civil dates (proleptic Gregorian, UTC) ---- */

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t era;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int day_matches(const jn_cron_t *c, unsigned mday, int64_t days)
{
    int wday = (int)((days + 4) % 7 + 7) % 7; /* 1970-01-01 was a Thursday */
    int md = (c->mdays >> mday) & 1, wd = (c->wdays >> wday) & 1;

    if ((c->flags & JN_CRON_MDAY_STAR) || (c->flags & JN_CRON_WDAY_STAR))
        return md && wd;
    return md || wd;
}

/* The first allowed minute of the day at or after minute-of-day `from`, or -1. */
static int first_minute(const jn_cron_t *c, int from)
{
    int h, m, start;
    uint64_t mask;

    for (h = from / 60; h < 24; h++) {
        if (!(c->hours & (1u << h)))
            continue;
        start = h == from / 60 ? from % 60 : 0;
        mask = c->minutes & (~0ULL << start);
        if (mask != 0) {
            m = __builtin_ctzll(mask);
            return h * 60 + m;
        }
    }
    return -1;
}

/* The last allowed minute of the day at or before minute-of-day `to`, or -1. */
static int last_minute(const jn_cron_t *c, int to)
{
    int h, end;
    uint64_t mask;

    for (h = to / 60; h >= 0; h--) {
        if (!(c->hours & (1u << h)))
            continue;
        end = h == to / 60 ? to % 60 : 59;
        mask = c->minutes & ((2ULL << end) - 1);
        if (mask != 0)
            return h * 60 + 63 - __builtin_clzll(mask);
    }
    return -1;
}

int64_t jn_cron_next(const jn_cron_t *c, int64_t after_ms)
{
    int64_t t = floor_div(after_ms, MS_PER_MIN) + 1; /* minutes since the epoch */
    int64_t days = floor_div(t, MIN_PER_DAY), limit = days + HORIZON_DAYS, y;
    int minute = (int)(t - days * MIN_PER_DAY), found;
    unsigned m, d;

    while (days <= limit) {
        civil_from_days(days, &y, &m, &d);
        if (!(c->months & (1u << m))) {
            days = m == 12 ? days_from_civil(y + 1, 1, 1) : days_from_civil(y, m + 1, 1);
            minute = 0;
            continue;
        }
        if (day_matches(c, d, days) && (found = first_minute(c, minute)) >= 0)
            return (days * MIN_PER_DAY + found) * MS_PER_MIN;
        days++;
        minute = 0;
    }
    return -1;
}

int64_t jn_cron_prev(const jn_cron_t *c, int64_t at_ms)
{
    int64_t t = floor_div(at_ms, MS_PER_MIN);
    int64_t days = floor_div(t, MIN_PER_DAY), limit = days - HORIZON_DAYS, y;
    int minute = (int)(t - days * MIN_PER_DAY), found;
    unsigned m, d;

    while (days >= limit) {
        civil_from_days(days, &y, &m, &d);
        if (!(c->months & (1u << m))) {
            days = days_from_civil(y, m, 1) - 1;
            minute = MIN_PER_DAY - 1;
            continue;
        }
        if (day_matches(c, d, days) && (found = last_minute(c, minute)) >= 0)
            return (days * MIN_PER_DAY + found) * MS_PER_MIN;
        days--;
        minute = MIN_PER_DAY - 1;
    }
    return -1;
}

int jn_cron_matches(const jn_cron_t *c, int64_t ms)
{
    int64_t start = floor_div(ms, MS_PER_MIN) * MS_PER_MIN;

    return jn_cron_prev(c, start) == start;
}
