#include "junction/alert.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "junction/clock.h"
#include "junction/crypto.h"
#include "junction/error.h"
#include "junction/http_client.h"
#include "junction/json.h"
#include "junction/log.h"
#include "junction/redact.h"
#include "junction/secmem.h"

#define DEFAULT_RESEND_MS 60000
#define DEFAULT_QUEUE_MAX 1024
#define DEFAULT_MAX_ATTEMPTS 8
#define DEFAULT_RETRY_BASE_MS 1000
#define DEFAULT_RETRY_MAX_MS 60000
#define DEFAULT_TIMEOUT_MS 10000
/* Alerts posted to Alertmanager in one request at most. */
#define AM_BATCH 64
#define MAX_LABELS 32
#define MAX_NAME 128
#define MAX_LABEL_VALUE 1024
#define MAX_ANNOTATION 4096
/* Standard Webhooks secrets are 24 to 64 random bytes. */
#define SECRET_MIN 24
#define SECRET_MAX 64

enum { SINK_LOG = 0, SINK_WEBHOOK = 1, SINK_AM = 2 };

static const char *const sink_names[JN_ALERT_NSINKS] = {"log", "webhook", "alertmanager"};

/* A growable string; `oom` once an append failed (the text is then unusable). */
typedef struct {
    char *d;
    size_t len, cap;
    int oom;
} sbuf_t;

/* One notification waiting for (or in) delivery. */
typedef struct note {
    struct note *next;
    char id[40]; /* webhook-id: the same for every attempt */
    char *body;
    size_t len;
    int attempts;
} note_t;

typedef struct {
    jn_alerter_t *a;
    int index;
    note_t *head, *tail;
    size_t len;
    jn_http_call_t *call;
    size_t in_flight; /* notifications in the request in flight */
    int attempts;     /* of the request being retried */
    uv_timer_t retry;
    int waiting; /* the retry timer runs */
    jn_alert_sink_stats_t stats;
} sink_t;

/* One firing alert. */
typedef struct firing {
    struct firing *next;
    char *name;
    char *key; /* canonical identity: name and sorted labels */
    jn_alert_severity_t severity;
    int64_t starts_ms;
    size_t nlabels, nannotations;
    jn_alert_label_t *labels; /* labels[nlabels] then annotations, strings owned */
} firing_t;

struct jn_alerter {
    jn_alerter_opts_t o;
    char *webhook_url, *am_url, *generator_url;
    uint8_t *key; /* locked memory */
    size_t key_len;
    char *secret_text; /* as registered with the redactor (locked memory) */
    size_t secret_len;
    jn_http_client_t *http;
    sink_t sinks[JN_ALERT_NSINKS];
    uv_timer_t resend;
    int handles; /* open handles; memory is released when the last closes */
    firing_t *firing;
    uint64_t nfiring;
    jn_alert_sink_stats_t log_stats;
};

/* ---- small helpers ---------------------------------------------------------- */

static void sb_add(sbuf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *d;
        while (cap < b->len + n + 1)
            cap *= 2;
        if ((d = realloc(b->d, cap)) == NULL) {
            b->oom = 1;
            return;
        }
        b->d = d;
        b->cap = cap;
    }
    memcpy(b->d + b->len, s, n);
    b->len += n;
    b->d[b->len] = '\0';
}

static void sb_puts(sbuf_t *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

/* A JSON string; the input is valid UTF-8 (checked when the alert came in). */
static void sb_str(sbuf_t *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    char esc[7];

    sb_add(b, "\"", 1);
    for (; *p; p++) {
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            sb_add(b, esc, 2);
        } else if (*p < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 15];
            sb_add(b, esc, 6);
        } else {
            sb_add(b, (const char *)p, 1);
        }
    }
    sb_add(b, "\"", 1);
}

static void sb_time(sbuf_t *b, int64_t ms)
{
    char t[32];

    sb_str(b, jn_format_rfc3339(ms, t, sizeof(t)));
}

static int64_t now_ms(const jn_alerter_t *a)
{
    return a->o.now_ms ? a->o.now_ms(a->o.clock_ud) : jn_now_ms();
}

const char *jn_alert_severity_name(jn_alert_severity_t s)
{
    return s == JN_ALERT_CRITICAL ? "critical" : "warning";
}

const char *jn_alert_sink_name(int index)
{
    return index >= 0 && index < JN_ALERT_NSINKS ? sink_names[index] : "unknown";
}

static int is_ident(const char *s)
{
    size_t i;

    if (s == NULL || s[0] == '\0' || strlen(s) > MAX_NAME || (s[0] >= '0' && s[0] <= '9'))
        return 0;
    for (i = 0; s[i]; i++)
        if (!(s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9')))
            return 0;
    return 1;
}

/* 0 when `s` is valid UTF-8 of at most max bytes. */
static int check_text(const char *s, size_t max)
{
    size_t n, i, l;

    if (s == NULL)
        return -1;
    n = strlen(s);
    if (n > max)
        return -1;
    for (i = 0; i < n; i += l)
        if ((l = jn_json_utf8_len(s + i, n - i)) == 0)
            return -1;
    return 0;
}

static int check_labels(const jn_alert_label_t *labels, size_t n, int identity, char *err,
                        size_t errlen)
{
    const char *what = identity ? "label" : "annotation";
    size_t i, j;

    if (n > MAX_LABELS)
        return jn_errorf(err, errlen, "alert: %zu %ss, at most %d", n, what, MAX_LABELS);
    for (i = 0; i < n; i++) {
        if (!is_ident(labels[i].name))
            return jn_errorf(err, errlen,
                             "alert: %s name '%.64s' must match [A-Za-z_][A-Za-z0-9_]* (1..%d)",
                             what, labels[i].name ? labels[i].name : "(null)", MAX_NAME);
        if (identity &&
            (strcmp(labels[i].name, "alertname") == 0 || strcmp(labels[i].name, "severity") == 0))
            return jn_errorf(err, errlen, "alert: label '%s' is set by the alerter",
                             labels[i].name);
        if (check_text(labels[i].value, identity ? MAX_LABEL_VALUE : MAX_ANNOTATION) != 0)
            return jn_errorf(err, errlen, "alert: %s '%s' must be UTF-8 text of at most %d bytes",
                             what, labels[i].name, identity ? MAX_LABEL_VALUE : MAX_ANNOTATION);
        for (j = 0; j < i; j++)
            if (strcmp(labels[i].name, labels[j].name) == 0)
                return jn_errorf(err, errlen, "alert: %s '%s' given twice", what, labels[i].name);
    }
    return 0;
}

static int cmp_label(const void *x, const void *y)
{
    return strcmp(((const jn_alert_label_t *)x)->name, ((const jn_alert_label_t *)y)->name);
}

/* "name\x1fk\x1ev\x1f..." with labels in name order: one text per identity.
 * Label text cannot hold the separators unescaped ambiguity-free, so values
 * are length-prefixed. NULL when out of memory. */
static char *identity_key(const char *name, const jn_alert_label_t *labels, size_t n)
{
    jn_alert_label_t sorted[MAX_LABELS];
    sbuf_t b = {0};
    char num[32];
    size_t i;

    memcpy(sorted, labels, n * sizeof(*labels));
    qsort(sorted, n, sizeof(*sorted), cmp_label);
    sb_puts(&b, name);
    for (i = 0; i < n; i++) {
        snprintf(num, sizeof(num), "\x1f%zu:", strlen(sorted[i].value));
        sb_puts(&b, num);
        sb_puts(&b, sorted[i].name);
        sb_puts(&b, "=");
        sb_puts(&b, sorted[i].value);
    }
    if (b.oom || b.d == NULL) {
        free(b.d);
        return NULL;
    }
    return b.d;
}

static firing_t *find_firing(const jn_alerter_t *a, const char *key, firing_t ***link)
{
    firing_t **p;

    for (p = (firing_t **)&a->firing; *p != NULL; p = &(*p)->next)
        if (strcmp((*p)->key, key) == 0) {
            if (link)
                *link = p;
            return *p;
        }
    return NULL;
}

static void firing_free(firing_t *f)
{
    size_t i;

    if (f == NULL)
        return;
    for (i = 0; i < f->nlabels + f->nannotations; i++) {
        free((char *)f->labels[i].name);
        free((char *)f->labels[i].value);
    }
    free(f->labels);
    free(f->name);
    free(f->key);
    free(f);
}

static firing_t *firing_new(const jn_alert_t *al, char *key, int64_t now)
{
    firing_t *f = calloc(1, sizeof(*f));
    size_t i, n = al->nlabels + al->nannotations;

    if (f == NULL) {
        free(key);
        return NULL;
    }
    f->key = key;
    f->severity = al->severity;
    f->starts_ms = now;
    f->nlabels = al->nlabels;
    f->nannotations = al->nannotations;
    f->name = strdup(al->name);
    f->labels = calloc(n ? n : 1, sizeof(*f->labels));
    if (f->name == NULL || f->labels == NULL)
        goto fail;
    for (i = 0; i < n; i++) {
        const jn_alert_label_t *l =
            i < al->nlabels ? &al->labels[i] : &al->annotations[i - al->nlabels];
        f->labels[i].name = strdup(l->name);
        f->labels[i].value = strdup(l->value);
        if (f->labels[i].name == NULL || f->labels[i].value == NULL)
            goto fail;
    }
    return f;
fail:
    firing_free(f);
    return NULL;
}

/* ---- what the sinks receive --------------------------------------------------- */

static void put_labels(sbuf_t *b, const firing_t *f)
{
    size_t i;

    sb_puts(b, "{\"alertname\":");
    sb_str(b, f->name);
    sb_puts(b, ",\"severity\":");
    sb_str(b, jn_alert_severity_name(f->severity));
    for (i = 0; i < f->nlabels; i++) {
        sb_puts(b, ",");
        sb_str(b, f->labels[i].name);
        sb_puts(b, ":");
        sb_str(b, f->labels[i].value);
    }
    sb_puts(b, "}");
}

static void put_annotations(sbuf_t *b, const firing_t *f)
{
    size_t i;

    sb_puts(b, "{");
    for (i = 0; i < f->nannotations; i++) {
        const jn_alert_label_t *l = &f->labels[f->nlabels + i];
        if (i > 0)
            sb_puts(b, ",");
        sb_str(b, l->name);
        sb_puts(b, ":");
        sb_str(b, l->value);
    }
    sb_puts(b, "}");
}

/* One element of Alertmanager's postable alerts. */
static void put_am_alert(const jn_alerter_t *a, sbuf_t *b, const firing_t *f, int64_t ends_ms)
{
    sb_puts(b, "{\"labels\":");
    put_labels(b, f);
    sb_puts(b, ",\"annotations\":");
    put_annotations(b, f);
    sb_puts(b, ",\"startsAt\":");
    sb_time(b, f->starts_ms);
    sb_puts(b, ",\"endsAt\":");
    sb_time(b, ends_ms);
    if (a->generator_url != NULL) {
        sb_puts(b, ",\"generatorURL\":");
        sb_str(b, a->generator_url);
    }
    sb_puts(b, "}");
}

static void put_webhook_event(sbuf_t *b, const firing_t *f, int resolved, int64_t now)
{
    sb_puts(b, resolved ? "{\"type\":\"alert.resolved\"" : "{\"type\":\"alert.firing\"");
    sb_puts(b, ",\"timestamp\":");
    sb_time(b, now);
    sb_puts(b, ",\"data\":{\"alertname\":");
    sb_str(b, f->name);
    sb_puts(b, resolved ? ",\"status\":\"resolved\"" : ",\"status\":\"firing\"");
    sb_puts(b, ",\"severity\":");
    sb_str(b, jn_alert_severity_name(f->severity));
    sb_puts(b, ",\"labels\":");
    put_labels(b, f);
    sb_puts(b, ",\"annotations\":");
    put_annotations(b, f);
    sb_puts(b, ",\"startsAt\":");
    sb_time(b, f->starts_ms);
    sb_puts(b, ",\"endsAt\":");
    if (resolved)
        sb_time(b, now);
    else
        sb_puts(b, "null");
    sb_puts(b, "}}");
}

static void log_event(jn_alerter_t *a, const firing_t *f, int resolved)
{
    sbuf_t labels = {0}, ann = {0};

    put_labels(&labels, f);
    put_annotations(&ann, f);
    {
        jn_log_field_t fields[] = {
            {"alertname", f->name, 0},
            {"severity", jn_alert_severity_name(f->severity), 0},
            {"status", resolved ? "resolved" : "firing", 0},
            {"labels", labels.oom ? NULL : labels.d, 1},
            {"annotations", ann.oom ? NULL : ann.d, 1},
        };
        jn_log_fields(resolved ? JN_LOG_INFO : JN_LOG_WARN,
                      resolved ? "alert resolved" : "alert firing", fields, 5);
    }
    a->log_stats.notifications++;
    a->log_stats.delivered++;
    free(labels.d);
    free(ann.d);
}

/* ---- delivery ------------------------------------------------------------------- */

static void sink_pump(sink_t *s);

static void note_free(note_t *n)
{
    free(n->body);
    free(n);
}

static void sink_pop(sink_t *s)
{
    note_t *n = s->head;

    s->head = n->next;
    if (s->head == NULL)
        s->tail = NULL;
    s->len--;
    note_free(n);
}

/* Takes `body` (scrubbed of known secrets first: defence in depth, alerts are
 * built from redacted text already). */
static void sink_push(sink_t *s, sbuf_t *body)
{
    jn_alerter_t *a = s->a;
    note_t *n;
    char *clean;

    if (body->oom || body->d == NULL) {
        free(body->d);
        s->stats.failed++;
        jn_log_error("alert: out of memory building a %s notification", sink_names[s->index]);
        return;
    }
    if ((clean = jn_redactor_scrub(jn_redactor_global(), body->d, body->len)) != NULL) {
        free(body->d);
        body->d = clean;
        body->len = strlen(clean);
    }
    if ((n = calloc(1, sizeof(*n))) == NULL) {
        free(body->d);
        s->stats.failed++;
        return;
    }
    n->body = body->d;
    n->len = body->len;
    memcpy(n->id, "alert_", 6);
    jn_random_id(n->id + 6);
    /* A full queue loses its oldest notification, never one in flight; the
     * newest state is what matters (and Alertmanager gets firing alerts
     * again at the next resend). */
    while (s->len >= a->o.queue_max) {
        note_t *victim = s->head, *prev = NULL;
        size_t skip = s->call != NULL ? s->in_flight : 0;
        while (skip-- > 0 && victim != NULL) {
            prev = victim;
            victim = victim->next;
        }
        if (victim == NULL) {
            note_free(n);
            s->stats.dropped++;
            return;
        }
        if (prev) {
            prev->next = victim->next;
        } else {
            s->head = victim->next;
            s->attempts = 0; /* the failures counted were the victim's */
        }
        if (s->tail == victim)
            s->tail = prev;
        s->len--;
        note_free(victim);
        s->stats.dropped++;
    }
    if (s->tail)
        s->tail->next = n;
    else
        s->head = n;
    s->tail = n;
    s->len++;
    s->stats.notifications++;
    sink_pump(s);
}

static int retryable(const jn_http_response_t *r)
{
    if (r->error != JN_HTTP_OK)
        return r->error != JN_HTTP_EINVAL && r->error != JN_HTTP_EDENIED;
    return r->status == 408 || r->status == 429 || r->status >= 500;
}

static void on_retry(uv_timer_t *t)
{
    sink_t *s = t->data;

    s->waiting = 0;
    sink_pump(s);
}

static void on_sent(jn_http_response_t *r, void *ud)
{
    sink_t *s = ud;
    jn_alerter_t *a = s->a;
    size_t n = s->in_flight, i;
    int64_t delay;

    s->call = NULL;
    s->in_flight = 0;
    if (r->error == JN_HTTP_OK && r->status >= 200 && r->status < 300) {
        s->stats.delivered += s->index == SINK_AM ? n : 1;
        for (i = 0; i < n && s->head != NULL; i++)
            sink_pop(s);
        s->attempts = 0;
        jn_http_response_free(r);
        sink_pump(s);
        return;
    }
    s->attempts++;
    if (!retryable(r) || s->attempts >= a->o.max_attempts) {
        char status[16];
        snprintf(status, sizeof(status), "%ld", r->status);
        jn_log_field_t f[] = {{"sink", sink_names[s->index], 0},
                              {"status", status, 1},
                              {"error", r->error != JN_HTTP_OK ? r->error_msg : NULL, 0}};
        jn_log_fields(JN_LOG_ERROR, "alert: notification given up", f, 3);
        s->stats.failed += n;
        for (i = 0; i < n && s->head != NULL; i++)
            sink_pop(s);
        s->attempts = 0;
        jn_http_response_free(r);
        sink_pump(s);
        return;
    }
    s->stats.retries++;
    delay = a->o.retry_base_ms;
    for (i = 1; i < (size_t)s->attempts && delay < a->o.retry_max_ms; i++)
        delay *= 2;
    if (delay > a->o.retry_max_ms)
        delay = a->o.retry_max_ms;
    {
        char st[16], d[24];
        snprintf(st, sizeof(st), "%ld", r->status);
        snprintf(d, sizeof(d), "%lld", (long long)delay);
        jn_log_field_t f[] = {{"sink", sink_names[s->index], 0},
                              {"status", st, 1},
                              {"error", r->error != JN_HTTP_OK ? r->error_msg : NULL, 0},
                              {"retry_in_ms", d, 1}};
        jn_log_fields(JN_LOG_WARN, "alert: delivery failed, will retry", f, 4);
    }
    jn_http_response_free(r);
    s->waiting = 1;
    uv_timer_start(&s->retry, on_retry, (uint64_t)delay, 0);
}

/* Starts the next request when none is in flight or waiting. */
static void sink_pump(sink_t *s)
{
    jn_alerter_t *a = s->a;
    jn_http_request_t req;
    sbuf_t body = {0};
    const char *hdrs[4];
    size_t nh = 0, n = 0;
    char hid[64], hts[48], hsig[128];
    int rc;

    if (s->call != NULL || s->waiting || s->head == NULL)
        return;
    jn_http_request_init(&req);
    req.method = "POST";
    req.timeout_ms = a->o.timeout_ms;
    req.max_redirects = 0;
    hdrs[nh++] = "Content-Type: application/json";
    if (s->index == SINK_AM) {
        note_t *p;
        sb_puts(&body, "[");
        for (p = s->head; p != NULL && n < AM_BATCH; p = p->next, n++) {
            if (n > 0)
                sb_puts(&body, ",");
            sb_add(&body, p->body, p->len);
        }
        sb_puts(&body, "]");
        req.url = a->am_url;
    } else {
        /* signed at each attempt: the timestamp is the attempt's */
        uint8_t mac[JN_SHA256_LEN];
        char ts[24], *b64 = NULL;
        size_t b64len = 0;
        sbuf_t signed_content = {0};

        snprintf(ts, sizeof(ts), "%lld", (long long)(now_ms(a) / 1000));
        sb_puts(&signed_content, s->head->id);
        sb_puts(&signed_content, ".");
        sb_puts(&signed_content, ts);
        sb_puts(&signed_content, ".");
        sb_add(&signed_content, s->head->body, s->head->len);
        if (signed_content.oom ||
            jn_hmac_sha256(a->key, a->key_len, signed_content.d, signed_content.len, mac) != 0 ||
            jn_base64_encode(mac, sizeof(mac), &b64, &b64len) != 0) {
            free(signed_content.d);
            free(b64);
            goto fail;
        }
        free(signed_content.d);
        snprintf(hid, sizeof(hid), "webhook-id: %s", s->head->id);
        snprintf(hts, sizeof(hts), "webhook-timestamp: %s", ts);
        snprintf(hsig, sizeof(hsig), "webhook-signature: v1,%s", b64);
        free(b64);
        hdrs[nh++] = hid;
        hdrs[nh++] = hts;
        hdrs[nh++] = hsig;
        sb_add(&body, s->head->body, s->head->len);
        n = 1;
        req.url = a->webhook_url;
    }
    if (body.oom)
        goto fail;
    req.headers = hdrs;
    req.nheaders = nh;
    req.body = body.d;
    req.body_len = body.len;
    s->in_flight = n;
    rc = jn_http_client_send(a->http, &req, on_sent, s, &s->call);
    free(body.d);
    if (rc != 0) {
        /* a request the client refuses will never pass: give it up */
        s->call = NULL;
        s->in_flight = 0;
        s->stats.failed += n;
        jn_log_error("alert: %s: the request is invalid (%s)", sink_names[s->index],
                     jn_http_error_name((jn_http_error_t)rc));
        while (n-- > 0 && s->head != NULL)
            sink_pop(s);
        if (s->head != NULL && !s->waiting) {
            s->waiting = 1;
            uv_timer_start(&s->retry, on_retry, 0, 0);
        }
    }
    return;
fail:
    free(body.d);
    s->waiting = 1;
    uv_timer_start(&s->retry, on_retry, (uint64_t)a->o.retry_base_ms, 0);
}

static void notify(jn_alerter_t *a, const firing_t *f, int resolved)
{
    int64_t now = now_ms(a);
    sbuf_t b = {0};

    if (a->o.sinks & JN_ALERT_SINK_LOG)
        log_event(a, f, resolved);
    if (a->o.sinks & JN_ALERT_SINK_WEBHOOK) {
        put_webhook_event(&b, f, resolved, now);
        sink_push(&a->sinks[SINK_WEBHOOK], &b);
    }
    if (a->o.sinks & JN_ALERT_SINK_ALERTMANAGER) {
        memset(&b, 0, sizeof(b));
        put_am_alert(a, &b, f, resolved ? now : now + 3 * a->o.resend_ms);
        sink_push(&a->sinks[SINK_AM], &b);
    }
}

/* Alertmanager forgets an alert whose endsAt passed: firing alerts are posted
 * again with endsAt three intervals ahead, so one lost resend is harmless. */
static void on_resend(uv_timer_t *t)
{
    jn_alerter_t *a = ((sink_t *)t->data)->a;
    int64_t now = now_ms(a);
    firing_t *f;

    for (f = a->firing; f != NULL; f = f->next) {
        sbuf_t b = {0};
        put_am_alert(a, &b, f, now + 3 * a->o.resend_ms);
        sink_push(&a->sinks[SINK_AM], &b);
    }
}

/* ---- the interface ---------------------------------------------------------------- */

int jn_alerter_fire(jn_alerter_t *a, const jn_alert_t *al, char *err, size_t errlen)
{
    firing_t *f, **link = NULL;
    char *key;

    if (al == NULL || !is_ident(al->name))
        return jn_errorf(err, errlen, "alert: the name must match [A-Za-z_][A-Za-z0-9_]* (1..%d)",
                         MAX_NAME);
    if (al->severity != JN_ALERT_WARNING && al->severity != JN_ALERT_CRITICAL)
        return jn_errorf(err, errlen, "alert %s: severity must be warning or critical", al->name);
    if (check_labels(al->labels, al->nlabels, 1, err, errlen) != 0 ||
        check_labels(al->annotations, al->nannotations, 0, err, errlen) != 0)
        return -1;
    if ((key = identity_key(al->name, al->labels, al->nlabels)) == NULL)
        return jn_errorf(err, errlen, "alert %s: out of memory", al->name);
    if ((f = find_firing(a, key, &link)) != NULL) {
        if (f->severity == al->severity) {
            free(key);
            return 0;
        }
        /* another severity: the old alert resolves, the new one fires */
        *link = f->next;
        a->nfiring--;
        notify(a, f, 1);
        firing_free(f);
    }
    if ((f = firing_new(al, key, now_ms(a))) == NULL)
        return jn_errorf(err, errlen, "alert %s: out of memory", al->name);
    f->next = a->firing;
    a->firing = f;
    a->nfiring++;
    notify(a, f, 0);
    return 1;
}

int jn_alerter_resolve(jn_alerter_t *a, const char *name, const jn_alert_label_t *labels,
                       size_t nlabels, char *err, size_t errlen)
{
    firing_t *f, **link = NULL;
    char *key;

    if (!is_ident(name))
        return jn_errorf(err, errlen, "alert: the name must match [A-Za-z_][A-Za-z0-9_]* (1..%d)",
                         MAX_NAME);
    if (check_labels(labels, nlabels, 1, err, errlen) != 0)
        return -1;
    if ((key = identity_key(name, labels, nlabels)) == NULL)
        return jn_errorf(err, errlen, "alert %s: out of memory", name);
    f = find_firing(a, key, &link);
    free(key);
    if (f == NULL)
        return 0;
    *link = f->next;
    a->nfiring--;
    notify(a, f, 1);
    firing_free(f);
    return 1;
}

int jn_alerter_is_firing(const jn_alerter_t *a, const char *name, const jn_alert_label_t *labels,
                         size_t nlabels, jn_alert_severity_t *severity)
{
    firing_t *f;
    char *key;

    if (!is_ident(name) || check_labels(labels, nlabels, 1, NULL, 0) != 0 ||
        (key = identity_key(name, labels, nlabels)) == NULL)
        return 0;
    f = find_firing(a, key, NULL);
    free(key);
    if (f != NULL && severity != NULL)
        *severity = f->severity;
    return f != NULL;
}

void jn_alerter_stats(const jn_alerter_t *a, jn_alerter_stats_t *out)
{
    int i;

    memset(out, 0, sizeof(*out));
    out->firing = a->nfiring;
    out->sink[SINK_LOG] = a->log_stats;
    for (i = SINK_WEBHOOK; i < JN_ALERT_NSINKS; i++) {
        out->sink[i] = a->sinks[i].stats;
        out->sink[i].queued = a->sinks[i].len;
    }
}

/* ---- configuration ------------------------------------------------------------------ */

void jn_alerter_opts_init(jn_alerter_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->resend_ms = DEFAULT_RESEND_MS;
    o->queue_max = DEFAULT_QUEUE_MAX;
    o->max_attempts = DEFAULT_MAX_ATTEMPTS;
    o->retry_base_ms = DEFAULT_RETRY_BASE_MS;
    o->retry_max_ms = DEFAULT_RETRY_MAX_MS;
    o->timeout_ms = DEFAULT_TIMEOUT_MS;
}

int jn_alerter_opts_from_config(jn_alerter_opts_t *o, const jn_config_t *cfg, char *err,
                                size_t errlen)
{
    const char *const *items;
    size_t n, i;
    int s;

    o->sinks = 0;
    items = jn_config_list(cfg, "alert_sinks", &n);
    for (i = 0; i < n; i++) {
        for (s = 0; s < JN_ALERT_NSINKS; s++)
            if (strcasecmp(items[i], sink_names[s]) == 0)
                break;
        if (s == JN_ALERT_NSINKS)
            return jn_errorf(err, errlen,
                             "alert_sinks: unknown sink '%.64s' (expected log, webhook, "
                             "alertmanager)",
                             items[i]);
        o->sinks |= 1u << s;
    }
    o->webhook_url = jn_config_str(cfg, "alert_webhook_url");
    o->webhook_secret_file = jn_config_str(cfg, "alert_webhook_secret_file");
    o->alertmanager_url = jn_config_str(cfg, "alertmanager_url");
    o->resend_ms = jn_config_int(cfg, "alert_resend_s") * 1000;
    return 0;
}

/* 0 when `url` is an absolute http(s) URL without userinfo, query or fragment
 * (which could carry secrets into logs). */
static int check_url(const char *key, const char *url, char *err, size_t errlen)
{
    const char *host;

    if (url == NULL || *url == '\0')
        return jn_errorf(err, errlen, "%s is required by its alert sink", key);
    if (strncmp(url, "http://", 7) == 0)
        host = url + 7;
    else if (strncmp(url, "https://", 8) == 0)
        host = url + 8;
    else
        return jn_errorf(err, errlen, "%s must be an http:// or https:// URL", key);
    if (*host == '\0' || *host == '/')
        return jn_errorf(err, errlen, "%s has no host", key);
    if (strpbrk(url, "?#") != NULL || memchr(host, '@', strcspn(host, "/")) != NULL)
        return jn_errorf(err, errlen,
                         "%s must not hold user information, a query or a fragment (put "
                         "credentials in the secret file)",
                         key);
    for (; *url; url++)
        if ((unsigned char)*url <= ' ' || (unsigned char)*url >= 0x7f)
            return jn_errorf(err, errlen, "%s must be printable ASCII without spaces", key);
    return 0;
}

/* The webhook signing key: a 0600 regular file holding "whsec_<base64>" (or
 * the base64 alone), one line, decoding to SECRET_MIN..SECRET_MAX bytes. */
static int read_secret(jn_alerter_t *a, const char *path, char *err, size_t errlen)
{
    char *buf = NULL;
    const char *b64;
    struct stat st;
    ssize_t n;
    size_t len;
    uint8_t *key = NULL;
    size_t key_len = 0;
    int fd, rc = -1;

    if (path == NULL || *path == '\0')
        return jn_errorf(err, errlen, "alert_webhook_secret_file is required by the webhook sink");
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return jn_errorf(err, errlen, "alert_webhook_secret_file '%s': %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return jn_errorf(err, errlen, "alert_webhook_secret_file '%s' is not a regular file", path);
    }
    if (st.st_mode & 077) {
        close(fd);
        return jn_errorf(err, errlen,
                         "alert_webhook_secret_file '%s' has mode %04o: other users can read or "
                         "change it; run 'chmod 600 %s'",
                         path, (unsigned)(st.st_mode & 07777), path);
    }
    if ((buf = jn_secmem_alloc(512)) == NULL) {
        close(fd);
        return jn_errorf(err, errlen, "out of memory");
    }
    n = read(fd, buf, 511);
    close(fd);
    if (n < 0) {
        jn_errorf(err, errlen, "alert_webhook_secret_file '%s': %s", path, strerror(errno));
        goto out;
    }
    buf[n] = '\0';
    len = strcspn(buf, "\r\n");
    if (buf[len] != '\0' && buf[len + strspn(buf + len, "\r\n")] != '\0') {
        jn_errorf(err, errlen, "alert_webhook_secret_file '%s' must hold one line", path);
        goto out;
    }
    buf[len] = '\0';
    b64 = strncmp(buf, "whsec_", 6) == 0 ? buf + 6 : buf;
    if (jn_base64_decode(b64, strlen(b64), &key, &key_len) != 0 || key_len < SECRET_MIN ||
        key_len > SECRET_MAX) {
        jn_errorf(err, errlen,
                  "alert_webhook_secret_file '%s' must hold whsec_ followed by the base64 of "
                  "%d to %d random bytes (e.g. whsec_$(openssl rand -base64 32))",
                  path, SECRET_MIN, SECRET_MAX);
        goto out;
    }
    if ((a->key = jn_secmem_alloc(key_len)) == NULL) {
        jn_errorf(err, errlen, "out of memory");
        goto out;
    }
    memcpy(a->key, key, key_len);
    a->key_len = key_len;
    /* the secret's text may show up nowhere: register both forms */
    a->secret_text = buf;
    a->secret_len = len;
    buf = NULL;
    jn_redactor_add_secret(jn_redactor_global(), a->secret_text, a->secret_len);
    jn_redactor_add_secret(jn_redactor_global(),
                           b64 == a->secret_text ? a->secret_text : a->secret_text + 6,
                           b64 == a->secret_text ? a->secret_len : a->secret_len - 6);
    rc = 0;
out:
    if (key != NULL) {
        memset(key, 0, key_len);
        free(key);
    }
    if (buf != NULL) {
        memset(buf, 0, 512);
        jn_secmem_free(buf);
    }
    return rc;
}

/* Every handle's data is a sink (the resend timer's: the log sink). */
static void on_handle_closed(uv_handle_t *h)
{
    jn_alerter_t *a = ((sink_t *)h->data)->a;

    if (--a->handles == 0)
        free(a);
}

static void release(jn_alerter_t *a)
{
    firing_t *f;
    int i;

    while ((f = a->firing) != NULL) {
        a->firing = f->next;
        firing_free(f);
    }
    for (i = SINK_WEBHOOK; i < JN_ALERT_NSINKS; i++)
        while (a->sinks[i].head != NULL)
            sink_pop(&a->sinks[i]);
    if (a->secret_text != NULL) {
        const char *b64 =
            strncmp(a->secret_text, "whsec_", 6) == 0 ? a->secret_text + 6 : a->secret_text;
        jn_redactor_remove_secret(jn_redactor_global(), a->secret_text, a->secret_len);
        jn_redactor_remove_secret(jn_redactor_global(), b64,
                                  a->secret_len - (size_t)(b64 - a->secret_text));
        memset(a->secret_text, 0, a->secret_len);
        jn_secmem_free(a->secret_text);
        a->secret_text = NULL;
    }
    if (a->key != NULL) {
        memset(a->key, 0, a->key_len);
        jn_secmem_free(a->key);
        a->key = NULL;
    }
    free(a->webhook_url);
    free(a->am_url);
    free(a->generator_url);
    a->webhook_url = a->am_url = a->generator_url = NULL;
}

jn_alerter_t *jn_alerter_create(const jn_alerter_opts_t *opts, char *err, size_t errlen)
{
    jn_alerter_t *a;
    jn_http_client_opts_t co;
    size_t n;
    int i;

    if (opts == NULL || opts->loop == NULL) {
        jn_errorf(err, errlen, "alerter: a loop is required");
        return NULL;
    }
    if (opts->sinks &
        ~(unsigned)(JN_ALERT_SINK_LOG | JN_ALERT_SINK_WEBHOOK | JN_ALERT_SINK_ALERTMANAGER)) {
        jn_errorf(err, errlen, "alerter: unknown sink bits 0x%x", opts->sinks);
        return NULL;
    }
    if ((opts->sinks & JN_ALERT_SINK_WEBHOOK) &&
        check_url("alert_webhook_url", opts->webhook_url, err, errlen) != 0)
        return NULL;
    if ((opts->sinks & JN_ALERT_SINK_ALERTMANAGER) &&
        check_url("alertmanager_url", opts->alertmanager_url, err, errlen) != 0)
        return NULL;
    if ((a = calloc(1, sizeof(*a))) == NULL) {
        jn_errorf(err, errlen, "out of memory");
        return NULL;
    }
    a->o = *opts;
    if (a->o.resend_ms <= 0)
        a->o.resend_ms = DEFAULT_RESEND_MS;
    if (a->o.queue_max == 0)
        a->o.queue_max = DEFAULT_QUEUE_MAX;
    if (a->o.max_attempts <= 0)
        a->o.max_attempts = DEFAULT_MAX_ATTEMPTS;
    if (a->o.retry_base_ms <= 0)
        a->o.retry_base_ms = DEFAULT_RETRY_BASE_MS;
    if (a->o.retry_max_ms <= 0)
        a->o.retry_max_ms = DEFAULT_RETRY_MAX_MS;
    if (a->o.timeout_ms <= 0)
        a->o.timeout_ms = DEFAULT_TIMEOUT_MS;
    a->o.webhook_url = a->o.webhook_secret_file = a->o.alertmanager_url = a->o.generator_url = NULL;
    if ((opts->sinks & JN_ALERT_SINK_WEBHOOK) &&
        ((a->webhook_url = strdup(opts->webhook_url)) == NULL ||
         read_secret(a, opts->webhook_secret_file, err, errlen) != 0))
        goto fail;
    if (opts->sinks & JN_ALERT_SINK_ALERTMANAGER) {
        n = strlen(opts->alertmanager_url);
        while (n > 0 && opts->alertmanager_url[n - 1] == '/')
            n--;
        if ((a->am_url = malloc(n + sizeof("/api/v2/alerts"))) == NULL)
            goto oom;
        memcpy(a->am_url, opts->alertmanager_url, n);
        memcpy(a->am_url + n, "/api/v2/alerts", sizeof("/api/v2/alerts"));
    }
    if (opts->generator_url != NULL && *opts->generator_url != '\0' &&
        (check_text(opts->generator_url, MAX_LABEL_VALUE) != 0 ||
         (a->generator_url = strdup(opts->generator_url)) == NULL)) {
        jn_errorf(err, errlen, "alerter: the generator URL must be UTF-8 of at most %d bytes",
                  MAX_LABEL_VALUE);
        goto fail;
    }
    jn_http_client_opts_init(&co);
    co.timeout_ms = a->o.timeout_ms;
    co.user_agent = "junction-alerter";
    if ((a->http = jn_http_client_create(opts->loop, &co)) == NULL)
        goto oom;
    for (i = 0; i < JN_ALERT_NSINKS; i++) {
        a->sinks[i].a = a;
        a->sinks[i].index = i;
        if (i != SINK_LOG) {
            uv_timer_init(opts->loop, &a->sinks[i].retry);
            a->sinks[i].retry.data = &a->sinks[i];
            a->handles++;
        }
    }
    uv_timer_init(opts->loop, &a->resend);
    a->resend.data = &a->sinks[SINK_LOG];
    a->handles++;
    if (opts->sinks & JN_ALERT_SINK_ALERTMANAGER)
        uv_timer_start(&a->resend, on_resend, (uint64_t)a->o.resend_ms, (uint64_t)a->o.resend_ms);
    return a;
oom:
    jn_errorf(err, errlen, "out of memory");
fail:
    release(a);
    free(a);
    return NULL;
}

void jn_alerter_destroy(jn_alerter_t *a)
{
    int i;

    if (a == NULL)
        return;
    jn_http_client_destroy(a->http);
    a->http = NULL;
    release(a);
    for (i = SINK_WEBHOOK; i < JN_ALERT_NSINKS; i++)
        uv_close((uv_handle_t *)&a->sinks[i].retry, on_handle_closed);
    uv_close((uv_handle_t *)&a->resend, on_handle_closed);
}
