/* Structured JSON logging: one object per line, redacted, always valid JSON. */
#include "junction/log.h"
#include "junction/redact.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define RAW_JSON_MAX_DEPTH 64

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

static atomic_int log_level = JN_LOG_INFO;

/* Guards the settings below and each line's formatting and write, so a line
 * never sees a half-changed redactor and lines never interleave. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_stream;
static jn_log_redactor_fn log_redactor = jn_redact_log_hook;
static void *log_redactor_ud;

/* ---- Settings ----------------------------------------------------------- */

void jn_log_set_level(jn_log_level_t level)
{
    if (level >= JN_LOG_DEBUG && level <= JN_LOG_OFF)
        atomic_store(&log_level, (int)level);
}

jn_log_level_t jn_log_get_level(void)
{
    return (jn_log_level_t)atomic_load(&log_level);
}

int jn_log_level_parse(const char *name)
{
    if (name == NULL)
        return -1;
    for (int i = JN_LOG_DEBUG; i <= JN_LOG_OFF; i++) {
        if (strcasecmp(name, level_names[i]) == 0)
            return i;
    }
    return strcasecmp(name, "warning") == 0 ? JN_LOG_WARN : -1;
}

const char *jn_log_level_name(jn_log_level_t level)
{
    return level >= JN_LOG_DEBUG && level <= JN_LOG_OFF ? level_names[level] : "unknown";
}

void jn_log_set_stream(FILE *stream)
{
    pthread_mutex_lock(&log_lock);
    log_stream = stream;
    pthread_mutex_unlock(&log_lock);
}

void jn_log_set_redactor(jn_log_redactor_fn fn, void *ud)
{
    pthread_mutex_lock(&log_lock);
    log_redactor = fn != NULL ? fn : jn_redact_log_hook;
    log_redactor_ud = fn != NULL ? ud : NULL;
    pthread_mutex_unlock(&log_lock);
}

/* ---- Line buffer -------------------------------------------------------- */

struct buf {
    char *p;
    size_t len, cap;
    int oom;
};

static void buf_put(struct buf *b, const void *p, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (q == NULL) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void buf_putc(struct buf *b, char c)
{
    buf_put(b, &c, 1);
}

static void buf_puts(struct buf *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

/* ---- UTF-8 and escaping ------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n, uint32_t *cp)
{
    static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    size_t len;
    uint32_t c;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    } else if ((s[0] & 0xE0) == 0xC0) {
        len = 2, c = s[0] & 0x1F;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3, c = s[0] & 0x0F;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4, c = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min_cp[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

static void put_u_escape(struct buf *b, uint32_t c)
{
    static const char hex[] = "0123456789abcdef";
    char e[6] = {'\\',       'u', hex[(c >> 12) & 15], hex[(c >> 8) & 15], hex[(c >> 4) & 15],
                 hex[c & 15]};
    buf_put(b, e, sizeof(e));
}

static void put_ascii_escaped(struct buf *b, unsigned char c)
{
    switch (c) {
    case '"':
        buf_puts(b, "\\\"");
        break;
    case '\\':
        buf_puts(b, "\\\\");
        break;
    case '\n':
        buf_puts(b, "\\n");
        break;
    case '\r':
        buf_puts(b, "\\r");
        break;
    case '\t':
        buf_puts(b, "\\t");
        break;
    default:
        if (c < 0x20 || c == 0x7F)
            put_u_escape(b, c);
        else
            buf_putc(b, (char)c);
    }
}

/* Invalid bytes become U+FFFD one by one; U+2028/2029 are escaped because
 * JavaScript consumers treat them as line breaks. */
static void put_json_string(struct buf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    buf_putc(b, '"');
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = utf8_len(s + i, n - i, &cp);
        if (len == 0) {
            buf_puts(b, "\xEF\xBF\xBD");
            len = 1;
        } else if (len == 1) {
            put_ascii_escaped(b, s[i]);
        } else if (cp == 0x2028 || cp == 0x2029) {
            put_u_escape(b, cp);
        } else {
            buf_put(b, s + i, len);
        }
        i += len;
    }
    buf_putc(b, '"');
}

/* ---- Raw JSON: validated and copied without insignificant whitespace ---- */

struct raw {
    const unsigned char *s;
    size_t n, i;
    struct buf *out;
    int depth;
};

static int raw_value(struct raw *r);

static void raw_ws(struct raw *r)
{
    while (r->i < r->n &&
           (r->s[r->i] == ' ' || r->s[r->i] == '\t' || r->s[r->i] == '\r' || r->s[r->i] == '\n'))
        r->i++;
}

static int raw_peek(const struct raw *r)
{
    return r->i < r->n ? r->s[r->i] : -1;
}

static int raw_emit(struct raw *r, size_t start)
{
    buf_put(r->out, r->s + start, r->i - start);
    return 0;
}

static int is_hex(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int raw_escape(struct raw *r)
{
    if (++r->i >= r->n)
        return -1;
    if (r->s[r->i] != '\0' && strchr("\"\\/bfnrt", r->s[r->i]) != NULL) {
        r->i++;
        return 0;
    }
    if (r->s[r->i] != 'u' || r->n - r->i < 5)
        return -1;
    for (int k = 1; k <= 4; k++) {
        if (!is_hex(r->s[r->i + k]))
            return -1;
    }
    r->i += 5;
    return 0;
}

static int raw_string(struct raw *r)
{
    size_t start = r->i++;
    while (r->i < r->n && r->s[r->i] != '"') {
        uint32_t cp;
        size_t len;
        if (r->s[r->i] == '\\') {
            if (raw_escape(r) < 0)
                return -1;
        } else if (r->s[r->i] < 0x20 || (len = utf8_len(r->s + r->i, r->n - r->i, &cp)) == 0) {
            return -1;
        } else {
            r->i += len;
        }
    }
    if (r->i >= r->n)
        return -1;
    r->i++;
    return raw_emit(r, start);
}

static size_t raw_digits(struct raw *r)
{
    size_t start = r->i;
    while (r->i < r->n && r->s[r->i] >= '0' && r->s[r->i] <= '9')
        r->i++;
    return r->i - start;
}

static int raw_number(struct raw *r)
{
    size_t start = r->i;
    if (raw_peek(r) == '-')
        r->i++;
    if (raw_peek(r) == '0')
        r->i++;
    else if (raw_digits(r) == 0)
        return -1;
    if (raw_peek(r) == '.') {
        r->i++;
        if (raw_digits(r) == 0)
            return -1;
    }
    if (raw_peek(r) == 'e' || raw_peek(r) == 'E') {
        r->i++;
        if (raw_peek(r) == '+' || raw_peek(r) == '-')
            r->i++;
        if (raw_digits(r) == 0)
            return -1;
    }
    return raw_emit(r, start);
}

static int raw_literal(struct raw *r, const char *word)
{
    size_t n = strlen(word);
    if (r->n - r->i < n || memcmp(r->s + r->i, word, n) != 0)
        return -1;
    r->i += n;
    buf_puts(r->out, word);
    return 0;
}

/* Object (close '}') or array (close ']'): members separated by commas. */
static int raw_container(struct raw *r, char close)
{
    if (++r->depth > RAW_JSON_MAX_DEPTH)
        return -1;
    buf_putc(r->out, (char)r->s[r->i++]);
    raw_ws(r);
    if (raw_peek(r) != close) {
        for (;;) {
            if (close == '}') {
                if (raw_peek(r) != '"' || raw_string(r) < 0)
                    return -1;
                raw_ws(r);
                if (raw_peek(r) != ':')
                    return -1;
                buf_putc(r->out, (char)r->s[r->i++]);
            }
            if (raw_value(r) < 0)
                return -1;
            raw_ws(r);
            if (raw_peek(r) != ',')
                break;
            buf_putc(r->out, (char)r->s[r->i++]);
            raw_ws(r);
        }
    }
    if (raw_peek(r) != close)
        return -1;
    buf_putc(r->out, (char)r->s[r->i++]);
    r->depth--;
    return 0;
}

static int raw_value(struct raw *r)
{
    raw_ws(r);
    switch (raw_peek(r)) {
    case '{':
        return raw_container(r, '}');
    case '[':
        return raw_container(r, ']');
    case '"':
        return raw_string(r);
    case 't':
        return raw_literal(r, "true");
    case 'f':
        return raw_literal(r, "false");
    case 'n':
        return raw_literal(r, "null");
    default:
        return raw_number(r);
    }
}

/* Appends the JSON text compacted; on invalid JSON appends nothing, returns -1. */
static int put_raw_json(struct buf *b, const char *s, size_t n)
{
    size_t mark = b->len;
    struct raw r = {(const unsigned char *)s, n, 0, b, 0};
    if (raw_value(&r) == 0) {
        raw_ws(&r);
        if (r.i == r.n)
            return 0;
    }
    b->len = mark;
    return -1;
}

/* ---- Line assembly ------------------------------------------------------ */

static void put_digits(struct buf *b, long v, int width)
{
    char d[8];
    for (int k = width - 1; k >= 0; k--, v /= 10)
        d[k] = (char)('0' + v % 10);
    buf_put(b, d, (size_t)width);
}

/* RFC 3339 UTC with milliseconds, e.g. 2026-11-25T16:55:09.123Z */
static void put_timestamp(struct buf *b)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    const struct {
        long v;
        int width;
        char sep;
    } parts[] = {
        {tm.tm_year + 1900L, 4, '-'},   {tm.tm_mon + 1L, 2, '-'}, {tm.tm_mday, 2, 'T'},
        {tm.tm_hour, 2, ':'},           {tm.tm_min, 2, ':'},      {tm.tm_sec, 2, '.'},
        {ts.tv_nsec / 1000000, 3, 'Z'},
    };
    for (size_t k = 0; k < sizeof(parts) / sizeof(parts[0]); k++) {
        put_digits(b, parts[k].v, parts[k].width);
        buf_putc(b, parts[k].sep);
    }
}

/* The redacted copy of s, or s itself; *owned says whether to free it. */
static const char *redacted(const char *s, size_t *len, char **owned)
{
    *owned = log_redactor(log_redactor_ud, s, *len);
    if (*owned == NULL)
        return s;
    *len = strlen(*owned);
    return *owned;
}

static void put_redacted_string(struct buf *b, const char *s)
{
    char *owned;
    size_t len = strlen(s);
    const char *out = redacted(s, &len, &owned);
    put_json_string(b, out, len);
    free(owned);
}

/* Raw JSON the caller vouched for is still redacted; if redaction or the
 * caller broke it, it goes out as a string instead. */
static void put_raw_value(struct buf *b, const char *s)
{
    char *owned;
    size_t len = strlen(s);
    const char *out = redacted(s, &len, &owned);
    if (put_raw_json(b, out, len) < 0)
        put_json_string(b, out, len);
    free(owned);
}

static void put_field(struct buf *b, const jn_log_field_t *f)
{
    buf_putc(b, ',');
    put_redacted_string(b, f->key);
    buf_putc(b, ':');
    if (f->value == NULL)
        buf_puts(b, "null");
    else if (jn_redact_is_sensitive_key(f->key, strlen(f->key)))
        put_json_string(b, JN_REDACTED, sizeof(JN_REDACTED) - 1);
    else if (f->is_raw_json)
        put_raw_value(b, f->value);
    else
        put_redacted_string(b, f->value);
}

static int level_enabled(jn_log_level_t level)
{
    return level >= JN_LOG_DEBUG && level < JN_LOG_OFF && (int)level >= atomic_load(&log_level);
}

void jn_log_fields(jn_log_level_t level, const char *msg, const jn_log_field_t *fields,
                   size_t nfields)
{
    if (!level_enabled(level))
        return;
    struct buf b = {0};
    pthread_mutex_lock(&log_lock);
    buf_puts(&b, "{\"ts\":\"");
    put_timestamp(&b);
    buf_puts(&b, "\",\"level\":\"");
    buf_puts(&b, level_names[level]);
    buf_puts(&b, "\",\"msg\":");
    put_redacted_string(&b, msg != NULL ? msg : "");
    for (size_t i = 0; i < nfields; i++) {
        if (fields[i].key != NULL)
            put_field(&b, &fields[i]);
    }
    buf_puts(&b, "}\n");
    if (!b.oom) {
        FILE *out = log_stream != NULL ? log_stream : stderr;
        fwrite(b.p, 1, b.len, out);
        fflush(out);
    }
    pthread_mutex_unlock(&log_lock);
    free(b.p);
}

void jn_log(jn_log_level_t level, const char *fmt, ...)
{
    if (!level_enabled(level) || fmt == NULL)
        return;
    char small[512], *msg = small;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(small)) {
        if ((msg = malloc((size_t)n + 1)) == NULL)
            return;
        va_start(ap, fmt);
        vsnprintf(msg, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    jn_log_fields(level, msg, NULL, 0);
    if (msg != small)
        free(msg);
}
