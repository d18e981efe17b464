/* Adaptive factor and provider rate-limit signals (see adaptive.h). */
#include "junction/adaptive.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "junction/error.h"
#include "junction/fields.h"

#define HALF_INT64 (INT64_MAX / 2)
/* Numeric resets from this value on are epoch seconds, below it seconds from now. */
#define EPOCH_THRESHOLD_S 1e9
/* Larger numeric resets are nonsense (past the year 33000): ignored. */
#define MAX_RESET_S 1e12

/* ---- Configuration ------------------------------------------------------- */

/* Factors are multipliers of a rate: 0 would stop all traffic for good. */
static const jn_field_t fields[] = {
    {"min_factor", JN_FIELD_DOUBLE, offsetof(jn_adaptive_config_t, min_factor), 0, 1, 1, 0},
    {"max_factor", JN_FIELD_DOUBLE, offsetof(jn_adaptive_config_t, max_factor), 0, 1, 1, 0},
    {"fast_latency_ms", JN_FIELD_INT64, offsetof(jn_adaptive_config_t, fast_latency_ms), 1, 600000,
     0, 0},
    {"max_wait_ms", JN_FIELD_INT64, offsetof(jn_adaptive_config_t, max_wait_ms), 1000, 86400000, 0,
     0},
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

void jn_adaptive_config_init(jn_adaptive_config_t *cfg)
{
    cfg->min_factor = 0.05;
    cfg->max_factor = 1.0;
    cfg->fast_latency_ms = 1000;
    cfg->max_wait_ms = 3600000;
}

int jn_adaptive_config_validate(const jn_adaptive_config_t *cfg, char *err, size_t errlen)
{
    if (jn_fields_validate("adaptive", fields, NFIELDS, cfg, err, errlen) != 0)
        return -1;
    if (cfg->min_factor > cfg->max_factor)
        return jn_errorf(err, errlen,
                         "adaptive.min_factor: %g is above max_factor %g; the floor must not "
                         "exceed the ceiling",
                         cfg->min_factor, cfg->max_factor);
    return 0;
}

int jn_adaptive_config_from_json(const jn_json_t *obj, jn_adaptive_config_t *cfg, char *err,
                                 size_t errlen)
{
    jn_adaptive_config_t next;

    if (cfg == NULL)
        return jn_errorf(err, errlen, "adaptive: no configuration given");
    next = *cfg;
    if (jn_fields_from_json("adaptive", fields, NFIELDS, obj, &next, err, errlen) != 0)
        return -1;
    if (jn_adaptive_config_validate(&next, err, errlen) != 0)
        return -1;
    *cfg = next;
    return 0;
}

/* ---- The factor ------------------------------------------------------------ */

const char *jn_adaptive_op_name(jn_adaptive_op_t op)
{
    switch (op) {
    case JN_ADAPTIVE_NONE:
        return "none";
    case JN_ADAPTIVE_THROTTLED:
        return "throttled";
    case JN_ADAPTIVE_SERVER_ERROR:
        return "server_error";
    case JN_ADAPTIVE_FAST_SUCCESS:
        return "fast_success";
    }
    return "?";
}

double jn_adaptive_next_factor(const jn_adaptive_config_t *cfg, double factor, jn_adaptive_op_t op)
{
    if (!isfinite(factor) || factor <= 0 || factor > 1)
        factor = cfg->max_factor;
    switch (op) {
    case JN_ADAPTIVE_THROTTLED:
        factor *= JN_ADAPTIVE_THROTTLE_MULT;
        break;
    case JN_ADAPTIVE_SERVER_ERROR:
        factor *= JN_ADAPTIVE_SERVER_ERROR_MULT;
        break;
    case JN_ADAPTIVE_FAST_SUCCESS:
        factor *= JN_ADAPTIVE_RAISE_MULT;
        break;
    case JN_ADAPTIVE_NONE:
        break;
    }
    if (factor < cfg->min_factor)
        factor = cfg->min_factor;
    if (factor > cfg->max_factor)
        factor = cfg->max_factor;
    return factor;
}

static int64_t add_sat(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b)
        return INT64_MIN;
    return a + b;
}

/* ---- Lexing ------------------------------------------------------------------ */

typedef struct {
    const char *p, *end;
} cur_t;

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static cur_t trimmed(const char *s, size_t len)
{
    cur_t c = {s, s + len};

    while (c.p < c.end && is_ows(*c.p))
        c.p++;
    while (c.end > c.p && is_ows(c.end[-1]))
        c.end--;
    return c;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int lit(cur_t *c, const char *s)
{
    size_t n = strlen(s);

    if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0)
        return 0;
    c->p += n;
    return 1;
}

/* Exactly n digits. */
static int ndigits(cur_t *c, int n, int *out)
{
    int v = 0, i;

    if (c->end - c->p < n)
        return 0;
    for (i = 0; i < n; i++) {
        if (!is_digit(c->p[i]))
            return 0;
        v = v * 10 + (c->p[i] - '0');
    }
    c->p += n;
    *out = v;
    return 1;
}

/* One or more digits, saturating at `cap`. */
static int uint_digits(cur_t *c, uint64_t cap, uint64_t *out)
{
    uint64_t v = 0;
    const char *start = c->p;

    while (c->p < c->end && is_digit(*c->p)) {
        unsigned d = (unsigned)(*c->p - '0');

        v = v > (cap - d) / 10 ? cap : v * 10 + d;
        c->p++;
    }
    *out = v;
    return c->p > start;
}

/* A whole value of digits only (delay-seconds, a count). */
static int parse_uint(const char *s, size_t len, uint64_t cap, uint64_t *out)
{
    cur_t c = trimmed(s, len);

    return uint_digits(&c, cap, out) && c.p == c.end;
}

/* A whole non-negative decimal: digits, optionally "." and digits. */
static int parse_decimal(const char *s, size_t len, double *out)
{
    cur_t c = trimmed(s, len);
    double v = 0, scale = 1;
    int any = 0;

    while (c.p < c.end && is_digit(*c.p)) {
        v = v * 10 + (*c.p++ - '0');
        any = 1;
    }
    if (c.p < c.end && *c.p == '.') {
        c.p++;
        while (c.p < c.end && is_digit(*c.p)) {
            scale /= 10;
            v += (*c.p++ - '0') * scale;
            any = 1;
        }
    }
    if (!any || c.p != c.end || !isfinite(v))
        return 0;
    *out = v;
    return 1;
}

/* ---- Dates ------------------------------------------------------------------- */

static const char *const month_names[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const day_names[7] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char *const day_names_long[7] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                              "Friday", "Saturday", "Sunday"};

static int is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The year of an epoch time (the inverse of days_from_civil, year only). */
static int year_of(int64_t ms)
{
    int64_t days = ms / 86400000 - (ms % 86400000 < 0), z, era, doe, yoe, doy, mp;

    z = days + 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    return (int)(yoe + era * 400 + (mp >= 10));
}

static int month_name(cur_t *c, int *m)
{
    int i;

    for (i = 0; i < 12; i++) {
        if (lit(c, month_names[i])) {
            *m = i + 1;
            return 1;
        }
    }
    return 0;
}

static int day_name(cur_t *c, const char *const *names)
{
    int i;

    for (i = 0; i < 7; i++) {
        if (lit(c, names[i]))
            return 1;
    }
    return 0;
}

/* hour ":" minute ":" second; 60 seconds allowed for a leap second. */
static int time_of_day(cur_t *c, int *h, int *mi, int *s)
{
    return ndigits(c, 2, h) && lit(c, ":") && ndigits(c, 2, mi) && lit(c, ":") &&
           ndigits(c, 2, s) && *h < 24 && *mi < 60 && *s <= 60;
}

static int make_ms(int64_t y, int m, int d, int h, int mi, int s, int64_t *out)
{
    if (m < 1 || m > 12 || d < 1 || d > days_in_month((int)y, m))
        return 0;
    *out = ((days_from_civil(y, m, d) * 24 + h) * 60 + mi) * 60000 + (int64_t)s * 1000;
    return 1;
}

int jn_adaptive_parse_http_date(const char *s, size_t len, int64_t now_ms, int64_t *out_ms)
{
    cur_t c;
    int y, m, d, h, mi, sec;
    const char *start;

    if (s == NULL || out_ms == NULL)
        return -1;
    c = trimmed(s, len);
    start = c.p;
    /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
    if (day_name(&c, day_names) && lit(&c, ", ") && ndigits(&c, 2, &d) && lit(&c, " ") &&
        month_name(&c, &m) && lit(&c, " ") && ndigits(&c, 4, &y) && lit(&c, " ") &&
        time_of_day(&c, &h, &mi, &sec) && lit(&c, " GMT") && c.p == c.end)
        return make_ms(y, m, d, h, mi, sec, out_ms) ? 0 : -1;
    /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
    c.p = start;
    if (day_name(&c, day_names_long) && lit(&c, ", ") && ndigits(&c, 2, &d) && lit(&c, "-") &&
        month_name(&c, &m) && lit(&c, "-") && ndigits(&c, 2, &y) && lit(&c, " ") &&
        time_of_day(&c, &h, &mi, &sec) && lit(&c, " GMT") && c.p == c.end) {
        /* RFC 9110: a two-digit year more than 50 years in the future is the
         * most recent past year with the same last two digits. Otherwise the
         * century nearest now: from 1994, "30" is 2030, not 1930. */
        int now_year = year_of(now_ms), full = now_year - now_year % 100 + y;

        if (full > now_year + 50)
            full -= 100;
        else if (full <= now_year - 50)
            full += 100;
        return make_ms(full, m, d, h, mi, sec, out_ms) ? 0 : -1;
    }
    /* asctime: Sun Nov  6 08:49:37 1994 */
    c.p = start;
    if (day_name(&c, day_names) && lit(&c, " ") && month_name(&c, &m) && lit(&c, " ")) {
        if (!(lit(&c, " ") && ndigits(&c, 1, &d)) && !ndigits(&c, 2, &d))
            return -1;
        if (lit(&c, " ") && time_of_day(&c, &h, &mi, &sec) && lit(&c, " ") && ndigits(&c, 4, &y) &&
            c.p == c.end)
            return make_ms(y, m, d, h, mi, sec, out_ms) ? 0 : -1;
    }
    return -1;
}

/* ISO 8601 date-time with a zone, as Jira sends X-RateLimit-Reset:
 * 2026-11-25T16:55Z, 2026-11-25T16:55:09.5+01:00, ...+0100. */
static int parse_iso8601(const char *s, size_t len, int64_t *out_ms)
{
    cur_t c = trimmed(s, len);
    int y, m, d, h, mi, sec = 0, zh = 0, zm = 0, sign = 0;
    int64_t ms, frac = 0, scale = 100;

    if (!(ndigits(&c, 4, &y) && lit(&c, "-") && ndigits(&c, 2, &m) && lit(&c, "-") &&
          ndigits(&c, 2, &d) && (lit(&c, "T") || lit(&c, "t")) && ndigits(&c, 2, &h) &&
          lit(&c, ":") && ndigits(&c, 2, &mi)))
        return 0;
    if (lit(&c, ":")) {
        if (!ndigits(&c, 2, &sec))
            return 0;
        if (lit(&c, ".") || lit(&c, ",")) {
            if (c.p == c.end || !is_digit(*c.p))
                return 0;
            for (; c.p < c.end && is_digit(*c.p); c.p++, scale /= 10)
                frac += (*c.p - '0') * scale;
        }
    }
    if (lit(&c, "Z") || lit(&c, "z")) {
        sign = 0;
    } else if (lit(&c, "+") || lit(&c, "-")) {
        sign = c.p[-1] == '+' ? 1 : -1;
        if (!ndigits(&c, 2, &zh))
            return 0;
        lit(&c, ":");
        if (!ndigits(&c, 2, &zm) || zh > 23 || zm > 59)
            return 0;
    } else {
        return 0; /* a time without a zone is ambiguous */
    }
    if (c.p != c.end || h > 23 || mi > 59 || sec > 60 || !make_ms(y, m, d, h, mi, sec, &ms))
        return 0;
    *out_ms = ms + frac - sign * ((int64_t)zh * 60 + zm) * 60000;
    return 1;
}

int jn_adaptive_parse_retry_after(const char *s, size_t len, int64_t now_ms, int64_t *delay_ms)
{
    uint64_t secs;
    int64_t when;

    if (s == NULL || delay_ms == NULL)
        return -1;
    if (parse_uint(s, len, (uint64_t)HALF_INT64 / 1000, &secs)) {
        *delay_ms = secs >= (uint64_t)HALF_INT64 / 1000 ? HALF_INT64 : (int64_t)secs * 1000;
        return 0;
    }
    if (jn_adaptive_parse_http_date(s, len, now_ms, &when) != 0)
        return -1;
    *delay_ms = when > now_ms ? (int64_t)((uint64_t)when - (uint64_t)now_ms) : 0;
    if (*delay_ms > HALF_INT64)
        *delay_ms = HALF_INT64;
    return 0;
}

/* A stated reset: seconds from now, epoch seconds, ISO 8601 or an HTTP-date. */
static int parse_reset(const char *s, size_t len, int64_t now_ms, int64_t *out_ms)
{
    double v;

    if (parse_decimal(s, len, &v)) {
        if (v > MAX_RESET_S)
            return 0;
        *out_ms =
            v >= EPOCH_THRESHOLD_S ? (int64_t)(v * 1000) : add_sat(now_ms, (int64_t)(v * 1000));
        return 1;
    }
    if (parse_iso8601(s, len, out_ms))
        return 1;
    return jn_adaptive_parse_http_date(s, len, now_ms, out_ms) == 0;
}

/* ---- Signals ------------------------------------------------------------------- */

const char *jn_adaptive_block_name(jn_adaptive_block_t reason)
{
    switch (reason) {
    case JN_ADAPTIVE_BLOCK_NONE:
        return "none";
    case JN_ADAPTIVE_BLOCK_RETRY_AFTER:
        return "retry-after";
    case JN_ADAPTIVE_BLOCK_RESET:
        return "reset";
    case JN_ADAPTIVE_BLOCK_SECONDARY:
        return "secondary";
    }
    return "?";
}

/* One family of remaining/limit/reset headers (or one policy of a structured
 * RateLimit field). Repeats keep the most conservative value. */
typedef struct {
    int64_t remaining, limit, reset_ms; /* -1, -1, 0 when absent */
} family_t;

enum { FAM_X_RATELIMIT, FAM_X_RATE_LIMIT, FAM_RATELIMIT, FAM_STRUCTURED, NFAMILIES };

static const struct {
    const char *prefix;
    int family;
} family_prefixes[] = {
    {"x-ratelimit-", FAM_X_RATELIMIT},
    {"x-rate-limit-", FAM_X_RATE_LIMIT},
    {"ratelimit-", FAM_RATELIMIT},
};

static void family_init(family_t *f)
{
    f->remaining = -1;
    f->limit = -1;
    f->reset_ms = 0;
}

static void set_min(int64_t *slot, int64_t v)
{
    if (*slot < 0 || v < *slot)
        *slot = v;
}

static void set_count(int64_t *slot, const char *s, size_t len)
{
    uint64_t v;

    if (parse_uint(s, len, (uint64_t)HALF_INT64, &v))
        set_min(slot, (int64_t)v);
}

static void set_reset(family_t *f, const char *s, size_t len, int64_t now_ms)
{
    int64_t ms;

    if (parse_reset(s, len, now_ms, &ms) && ms > f->reset_ms)
        f->reset_ms = ms;
}

/* Structured RateLimit fields. Current drafts: a list of policies,
 *   "default";r=0;t=30, "burst";r=5;t=1
 * (r remaining, t seconds to reset), each its own family; early drafts: one
 * dictionary, limit=100, remaining=0, reset=30. Unknown parameters are skipped. */
static void read_structured(const char *value, int64_t now_ms, family_t *fams, size_t *nfams,
                            size_t maxfams, family_t *dict)
{
    const char *p = value, *end = value + strlen(value);

    while (p < end && *nfams < maxfams) {
        const char *item_end = memchr(p, ',', (size_t)(end - p));
        family_t item;

        if (item_end == NULL)
            item_end = end;
        family_init(&item);
        while (p < item_end) {
            const char *param_end = memchr(p, ';', (size_t)(item_end - p));
            const char *eq;
            cur_t key;
            size_t klen, vlen;

            if (param_end == NULL)
                param_end = item_end;
            eq = memchr(p, '=', (size_t)(param_end - p));
            if (eq != NULL) {
                key = trimmed(p, (size_t)(eq - p));
                klen = (size_t)(key.end - key.p);
                vlen = (size_t)(param_end - eq - 1);
                if (klen == 1 && key.p[0] == 'r')
                    set_count(&item.remaining, eq + 1, vlen);
                else if (klen == 1 && key.p[0] == 't')
                    set_reset(&item, eq + 1, vlen, now_ms);
                else if (klen == 9 && memcmp(key.p, "remaining", 9) == 0)
                    set_count(&dict->remaining, eq + 1, vlen);
                else if (klen == 5 && memcmp(key.p, "limit", 5) == 0)
                    set_count(&dict->limit, eq + 1, vlen);
                else if (klen == 5 && memcmp(key.p, "reset", 5) == 0)
                    set_reset(dict, eq + 1, vlen, now_ms);
            }
            p = param_end < item_end ? param_end + 1 : item_end;
        }
        if (item.remaining >= 0 || item.reset_ms > 0)
            fams[(*nfams)++] = item;
        p = item_end < end ? item_end + 1 : end;
    }
}

/* Case-insensitive search in the first bytes of a body. */
static int body_mentions(const char *body, size_t len, const char *needle)
{
    size_t n = strlen(needle), i;

    if (body == NULL)
        return 0;
    if (len > JN_ADAPTIVE_BODY_SCAN)
        len = JN_ADAPTIVE_BODY_SCAN;
    for (i = 0; i + n <= len; i++) {
        if (strncasecmp(body + i, needle, n) == 0)
            return 1;
    }
    return 0;
}

static void block(jn_adaptive_decision_t *out, int64_t until, jn_adaptive_block_t why)
{
    if (until > out->blocked_until_ms) {
        out->blocked_until_ms = until;
        out->block_reason = why;
    }
}

#define MAX_STRUCTURED 8

void jn_adaptive_read(const jn_adaptive_config_t *cfg, const jn_adaptive_response_t *resp,
                      jn_adaptive_decision_t *out)
{
    family_t fams[NFAMILIES + MAX_STRUCTURED];
    jn_adaptive_config_t defaults;
    size_t nfams = NFAMILIES, i, f;
    int64_t now, retry_after = -1, delay;
    int status, limited_status, throttled, exhausted = 0;

    memset(out, 0, sizeof(*out));
    out->remaining = -1;
    out->limit = -1;
    if (resp == NULL)
        return;
    if (cfg == NULL) {
        jn_adaptive_config_init(&defaults);
        cfg = &defaults;
    }
    now = resp->now_ms;
    status = resp->status;
    for (i = 0; i < NFAMILIES; i++)
        family_init(&fams[i]);

    for (i = 0; resp->headers != NULL && i < resp->nheaders; i++) {
        const char *name = resp->headers[i].name, *value = resp->headers[i].value;
        size_t vlen;

        if (name == NULL || value == NULL)
            continue;
        vlen = strlen(value);
        if (strcasecmp(name, "retry-after") == 0) {
            if (jn_adaptive_parse_retry_after(value, vlen, now, &delay) == 0 && delay > retry_after)
                retry_after = delay;
            continue;
        }
        if (strcasecmp(name, "ratelimit") == 0 || strcasecmp(name, "beta-ratelimit") == 0) {
            read_structured(value, now, fams, &nfams, NFAMILIES + MAX_STRUCTURED,
                            &fams[FAM_STRUCTURED]);
            continue;
        }
        for (f = 0; f < sizeof(family_prefixes) / sizeof(family_prefixes[0]); f++) {
            size_t plen = strlen(family_prefixes[f].prefix);
            family_t *fam = &fams[family_prefixes[f].family];
            const char *suffix = name + plen;

            if (strncasecmp(name, family_prefixes[f].prefix, plen) != 0)
                continue;
            if (strcasecmp(suffix, "remaining") == 0)
                set_count(&fam->remaining, value, vlen);
            else if (strcasecmp(suffix, "limit") == 0)
                set_count(&fam->limit, value, vlen);
            else if (strcasecmp(suffix, "reset") == 0)
                set_reset(fam, value, vlen, now);
            break;
        }
    }

    out->secondary = (status == 403 || status == 429) &&
                     (body_mentions(resp->body, resp->body_len, "secondary rate limit") ||
                      body_mentions(resp->body, resp->body_len, "abuse detection"));

    /* The lowest remaining count speaks for the response; any family at 0
     * blocks until its reset. */
    for (i = 0; i < nfams; i++) {
        if (fams[i].remaining < 0)
            continue;
        if (out->remaining < 0 || fams[i].remaining < out->remaining) {
            out->remaining = fams[i].remaining;
            out->limit = fams[i].limit;
            out->reset_ms = fams[i].reset_ms;
        }
        if (fams[i].remaining == 0) {
            exhausted = 1;
            block(out, fams[i].reset_ms, JN_ADAPTIVE_BLOCK_RESET);
        }
    }
    if (out->remaining < 0) {
        for (i = 0; i < nfams; i++) {
            if (fams[i].reset_ms > out->reset_ms)
                out->reset_ms = fams[i].reset_ms;
            if (fams[i].limit >= 0 && out->limit < 0)
                out->limit = fams[i].limit;
        }
    }

    /* A 403 is a rate limit only when the provider says so (GitHub's primary
     * and secondary limits, Google's rateLimitExceeded); otherwise it is a
     * permission problem and says nothing about load. */
    throttled = status == 429 ||
                (status == 403 && (out->secondary || exhausted || retry_after >= 0 ||
                                   body_mentions(resp->body, resp->body_len, "ratelimitexceeded")));
    limited_status = status == 403 || status == 429 || status >= 500;
    if (retry_after >= 0 && limited_status)
        block(out, add_sat(now, retry_after), JN_ADAPTIVE_BLOCK_RETRY_AFTER);
    /* A refused request's reset is when to come back, even without a count. */
    if (throttled && out->remaining < 0 && out->reset_ms > 0)
        block(out, out->reset_ms, JN_ADAPTIVE_BLOCK_RESET);
    /* GitHub: honour retry-after when present, otherwise wait at least a minute. */
    if (out->secondary && retry_after < 0)
        block(out, add_sat(now, JN_ADAPTIVE_SECONDARY_WAIT_MS), JN_ADAPTIVE_BLOCK_SECONDARY);

    if (out->blocked_until_ms <= now) {
        out->blocked_until_ms = 0;
        out->block_reason = JN_ADAPTIVE_BLOCK_NONE;
    } else if (out->blocked_until_ms > add_sat(now, cfg->max_wait_ms)) {
        out->blocked_until_ms = add_sat(now, cfg->max_wait_ms);
    }

    if (throttled)
        out->factor_op = JN_ADAPTIVE_THROTTLED;
    else if (status == 0 || status >= 500)
        out->factor_op = JN_ADAPTIVE_SERVER_ERROR;
    else if (status >= 200 && status < 400 && !exhausted && resp->latency_ms >= 0 &&
             resp->latency_ms < cfg->fast_latency_ms)
        out->factor_op = JN_ADAPTIVE_FAST_SUCCESS;
    else
        out->factor_op = JN_ADAPTIVE_NONE;
}
