#include "junction/alert.h"
#include "junction/clock.h"
#include "junction/config.h"
#include "junction/crypto.h"
#include "junction/http_server.h"
#include "junction/log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WATCHDOG_MS 20000
#define TICK_MS 10
/* The webhook sink's signing secret: 32 bytes, base64. */
#define SECRET_B64 "Y2FuYXJ5LXNpZ25pbmcta2V5LWZvci1hbGVydHMtMDE="
#define MAX_SEEN 64

/* One request the receiver got. */
typedef struct {
    char path[64];
    char *body;
    char id[128], ts[32], sig[256];
} seen_t;

/* A real HTTP server (junction/http_server.h) receives the sinks' requests:
 * it answers the statuses in `script` in order (then 200), or holds every
 * request while `hold` is set. */
typedef struct {
    uv_loop_t loop;
    uv_timer_t ticker;
    unsigned ticks;
    jn_http_server_t *srv;
    int port;
    seen_t seen[MAX_SEEN];
    size_t nseen;
    int script[16];
    size_t nscript, script_at;
    int hold;
    jn_http_req_t *held[MAX_SEEN];
    size_t nheld;
    char dir[64];
    char secret_file[128];
    char url[128], am_url[128];
    int64_t now;
    FILE *log;
} fx_t;

static void on_tick(uv_timer_t *t)
{
    fx_t *f = t->data;

    f->ticks++;
}

#include "test_loop.h"

static void on_request(jn_http_req_t *req, void *ud)
{
    fx_t *f = ud;
    seen_t *s;
    const char *h;
    size_t len;
    int status = 200;

    assert_true(f->nseen < MAX_SEEN);
    s = &f->seen[f->nseen++];
    snprintf(s->path, sizeof(s->path), "%s", jn_http_req_path(req));
    s->body = strdup(jn_http_req_body(req, &len));
    snprintf(s->id, sizeof(s->id), "%s", (h = jn_http_req_header(req, "webhook-id")) ? h : "");
    snprintf(s->ts, sizeof(s->ts), "%s",
             (h = jn_http_req_header(req, "webhook-timestamp")) ? h : "");
    snprintf(s->sig, sizeof(s->sig), "%s",
             (h = jn_http_req_header(req, "webhook-signature")) ? h : "");
    if (f->hold) {
        f->held[f->nheld++] = req;
        return;
    }
    if (f->script_at < f->nscript)
        status = f->script[f->script_at++];
    jn_http_respond_json(req, status, "{}", 2);
}

static int64_t fake_now(void *ud)
{
    return ((fx_t *)ud)->now;
}

static void write_secret(fx_t *f, const char *text, mode_t mode)
{
    FILE *fp = fopen(f->secret_file, "w");

    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    assert_int_equal(chmod(f->secret_file, mode), 0);
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    jn_http_server_opts_t so;
    char err[256];

    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->ticker);
    f->ticker.data = f;
    jn_http_server_opts_init(&so);
    so.listen = "127.0.0.1:0";
    so.access_log = 0;
    so.rate_per_s = 0;
    f->srv = jn_http_server_create(&f->loop, &so, err, sizeof(err));
    assert_non_null(f->srv);
    assert_int_equal(
        jn_http_server_route(f->srv, "POST", "/hook", on_request, f, NULL, err, sizeof(err)), 0);
    assert_int_equal(jn_http_server_route(f->srv, "POST", "/am/api/v2/alerts", on_request, f, NULL,
                                          err, sizeof(err)),
                     0);
    assert_int_equal(jn_http_server_listen(f->srv, err, sizeof(err)), 0);
    f->port = jn_http_server_port(f->srv);
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/hook", f->port);
    snprintf(f->am_url, sizeof(f->am_url), "http://127.0.0.1:%d/am/", f->port);
    snprintf(f->dir, sizeof(f->dir), "/tmp/jn-alert-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->secret_file, sizeof(f->secret_file), "%s/secret", f->dir);
    write_secret(f, "whsec_" SECRET_B64 "\n", 0600);
    f->now = 1790000000000LL;
    f->log = tmpfile();
    assert_non_null(f->log);
    jn_log_set_stream(f->log);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    size_t i;

    for (i = 0; i < f->nheld; i++)
        jn_http_respond_json(f->held[i], 200, "{}", 2);
    jn_http_server_destroy(f->srv);
    uv_close((uv_handle_t *)&f->ticker, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    for (i = 0; i < f->nseen; i++)
        free(f->seen[i].body);
    jn_log_set_stream(NULL);
    fclose(f->log);
    unlink(f->secret_file);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Every counter of one sink (its index in jn_alerter_stats_t), at once. */
typedef struct {
    uint64_t delivered, retries, failed, dropped, queued;
} counts_t;

static void assert_sink(const jn_alerter_stats_t *st, int sink, counts_t want)
{
    const jn_alert_sink_stats_t *got = &st->sink[sink];

    assert_int_equal(got->delivered, want.delivered);
    assert_int_equal(got->retries, want.retries);
    assert_int_equal(got->failed, want.failed);
    assert_int_equal(got->dropped, want.dropped);
    assert_int_equal(got->queued, want.queued);
}

/* Each of the texts (a NULL-terminated list) occurs in body. */
static void assert_has(const char *body, ...)
{
    va_list ap;
    const char *want;

    va_start(ap, body);
    while ((want = va_arg(ap, const char *)) != NULL)
        if (strstr(body, want) == NULL)
            fail_msg("'%s' is not in: %s", want, body);
    va_end(ap);
}

static jn_alerter_t *make(fx_t *f, unsigned sinks, jn_alerter_opts_t *o)
{
    char err[512] = "";
    jn_alerter_t *a;

    o->loop = &f->loop;
    o->sinks = sinks;
    o->webhook_url = f->url;
    o->webhook_secret_file = f->secret_file;
    o->alertmanager_url = f->am_url;
    o->generator_url = "http://127.0.0.1:8080/ui";
    o->retry_base_ms = 5;
    o->retry_max_ms = 20;
    o->now_ms = fake_now;
    o->clock_ud = f;
    a = jn_alerter_create(o, err, sizeof(err));
    if (a == NULL)
        fail_msg("jn_alerter_create: %s", err);
    return a;
}

static const jn_alert_label_t labels_a[] = {
    {"integration_id", "int-a"}, {"organization_id", "org-1"}, {"provider", "github"}};
static const jn_alert_label_t ann_a[] = {{"summary", "integration int-a is degraded"},
                                         {"description", "error rate 40% (last error: http_5xx)"}};

static jn_alert_t alert_a(jn_alert_severity_t sev)
{
    jn_alert_t al = {sev == JN_ALERT_CRITICAL ? "IntegrationUnhealthy" : "IntegrationDegraded",
                     sev,
                     labels_a,
                     3,
                     ann_a,
                     2};
    return al;
}

/* The log text written so far. */
static char *log_text(fx_t *f)
{
    long n;
    char *s;

    fflush(f->log);
    n = ftell(f->log);
    s = calloc(1, (size_t)n + 1);
    rewind(f->log);
    assert_int_equal(fread(s, 1, (size_t)n, f->log), (size_t)n);
    return s;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;

    for (; (hay = strstr(hay, needle)) != NULL; hay++)
        n++;
    return n;
}

/* ---- configuration -------------------------------------------------------------- */

static void test_config_keys(void **state)
{
    jn_config_t *cfg = jn_config_create();
    jn_alerter_opts_t o;
    char err[256] = "";

    (void)state;
    jn_alerter_opts_init(&o);
    assert_int_equal(jn_alerter_opts_from_config(&o, cfg, err, sizeof(err)), 0);
    assert_int_equal(o.sinks, JN_ALERT_SINK_LOG); /* the default */
    assert_int_equal(o.resend_ms, 60000);
    assert_int_equal(jn_config_set(cfg, "alert_sinks", "log,pager", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "alert_sinks"));
    assert_non_null(strstr(err, "'pager'"));
    assert_int_equal(jn_config_set(cfg, "alert_sinks", "webhook, Alertmanager", err, sizeof(err)),
                     0);
    assert_int_equal(jn_config_set(cfg, "alert_resend_s", "0", err, sizeof(err)), -1);
    assert_int_equal(jn_config_set(cfg, "alert_resend_s", "30", err, sizeof(err)), 0);
    assert_int_equal(jn_alerter_opts_from_config(&o, cfg, err, sizeof(err)), 0);
    assert_int_equal(o.sinks, JN_ALERT_SINK_WEBHOOK | JN_ALERT_SINK_ALERTMANAGER);
    assert_int_equal(o.resend_ms, 30000);
    assert_int_equal(jn_config_set(cfg, "alert_sinks", "", err, sizeof(err)), 0);
    assert_int_equal(jn_alerter_opts_from_config(&o, cfg, err, sizeof(err)), 0);
    assert_int_equal(o.sinks, 0);
    jn_config_destroy(cfg);
}

static void create_fails(fx_t *f, jn_alerter_opts_t *o, const char *expect)
{
    char err[512] = "";

    o->loop = &f->loop;
    assert_null(jn_alerter_create(o, err, sizeof(err)));
    if (strstr(err, expect) == NULL)
        fail_msg("error '%s' does not mention '%s'", err, expect);
    assert_null(strstr(err, SECRET_B64));
}

static void test_create_validates(void **state)
{
    fx_t *f = *state;
    jn_alerter_opts_t o;

    jn_alerter_opts_init(&o);
    o.sinks = JN_ALERT_SINK_WEBHOOK;
    o.webhook_secret_file = f->secret_file;
    create_fails(f, &o, "alert_webhook_url is required");
    o.webhook_url = "ftp://example.com/x";
    create_fails(f, &o, "http:// or https://");
    o.webhook_url = "https://hooks.example.com/x?token=abc";
    create_fails(f, &o, "query");
    o.webhook_url = "https://user:pw@hooks.example.com/x";
    create_fails(f, &o, "user information");
    o.webhook_url = f->url;
    o.webhook_secret_file = "";
    create_fails(f, &o, "alert_webhook_secret_file is required");
    o.webhook_secret_file = "/nonexistent/secret";
    create_fails(f, &o, "No such file");
    o.webhook_secret_file = f->secret_file;
    write_secret(f, "whsec_" SECRET_B64 "\n", 0644);
    create_fails(f, &o, "chmod 600");
    write_secret(f, "whsec_c2hvcnQ=\n", 0600);
    create_fails(f, &o, "24 to 64 random bytes");
    write_secret(f, "whsec_" SECRET_B64 "\nsecond line\n", 0600);
    create_fails(f, &o, "one line");
    o.sinks = JN_ALERT_SINK_ALERTMANAGER;
    o.alertmanager_url = "localhost:9093";
    create_fails(f, &o, "alertmanager_url must be an http");
}

/* ---- deduplication and the log sink ------------------------------------------------ */

static void test_dedup_escalate_resolve(void **state)
{
    fx_t *f = *state;
    jn_alerter_opts_t o;
    jn_alerter_t *a;
    jn_alert_t al = alert_a(JN_ALERT_WARNING);
    jn_alerter_stats_t st;
    jn_alert_severity_t sev = 0;
    char err[256], *text;

    jn_alerter_opts_init(&o);
    a = make(f, JN_ALERT_SINK_LOG, &o);
    assert_int_equal(jn_alerter_fire(a, &al, err, sizeof(err)), 1);
    assert_int_equal(jn_alerter_fire(a, &al, err, sizeof(err)), 0); /* already firing */
    assert_true(jn_alerter_is_firing(a, "IntegrationDegraded", labels_a, 3, &sev));
    assert_int_equal(sev, JN_ALERT_WARNING);
    /* the same alert with another severity replaces it */
    al.severity = JN_ALERT_CRITICAL;
    assert_int_equal(jn_alerter_fire(a, &al, err, sizeof(err)), 1);
    assert_true(jn_alerter_is_firing(a, "IntegrationDegraded", labels_a, 3, &sev));
    assert_int_equal(sev, JN_ALERT_CRITICAL);
    jn_alerter_stats(a, &st);
    assert_int_equal(st.firing, 1);
    /* identity is the label set, whatever the order */
    {
        const jn_alert_label_t reordered[] = {labels_a[2], labels_a[0], labels_a[1]};
        assert_int_equal(
            jn_alerter_resolve(a, "IntegrationDegraded", reordered, 3, err, sizeof(err)), 1);
    }
    assert_int_equal(jn_alerter_resolve(a, "IntegrationDegraded", labels_a, 3, err, sizeof(err)),
                     0);
    assert_false(jn_alerter_is_firing(a, "IntegrationDegraded", labels_a, 3, NULL));
    jn_alerter_stats(a, &st);
    assert_int_equal(st.firing, 0);
    /* fire, escalation (resolve + fire), resolve */
    assert_int_equal(st.sink[0].notifications, 4);
    text = log_text(f);
    assert_int_equal(count(text, "\"msg\":\"alert firing\""), 2);
    assert_int_equal(count(text, "\"msg\":\"alert resolved\""), 2);
    assert_has(text, "\"integration_id\":\"int-a\"", "\"severity\":\"critical\"", "error rate 40%",
               NULL);
    free(text);
    jn_alerter_destroy(a);
}

static void test_invalid_alerts(void **state)
{
    fx_t *f = *state;
    jn_alerter_opts_t o;
    jn_alerter_t *a;
    char err[256];
    jn_alert_t al = alert_a(JN_ALERT_WARNING);
    const jn_alert_label_t bad_name[] = {{"integration-id", "x"}};
    const jn_alert_label_t reserved[] = {{"severity", "x"}};
    const jn_alert_label_t bad_utf8[] = {{"integration_id", "\xff\xfe"}};
    const jn_alert_label_t twice[] = {{"a", "1"}, {"a", "2"}};

    jn_alerter_opts_init(&o);
    a = make(f, JN_ALERT_SINK_LOG, &o);
    al.name = "Bad Name";
    assert_int_equal(jn_alerter_fire(a, &al, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "name must match"));
    al = alert_a(JN_ALERT_WARNING);
    al.severity = 7;
    assert_int_equal(jn_alerter_fire(a, &al, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "severity"));
    al = alert_a(JN_ALERT_WARNING);
    al.labels = bad_name;
    al.nlabels = 1;
    assert_int_equal(jn_alerter_fire(a, &al, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "integration-id"));
    al.labels = reserved;
    assert_int_equal(jn_alerter_fire(a, &al, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "set by the alerter"));
    al.labels = bad_utf8;
    assert_int_equal(jn_alerter_fire(a, &al, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "UTF-8"));
    al.labels = twice;
    al.nlabels = 2;
    assert_int_equal(jn_alerter_fire(a, &al, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "given twice"));
    assert_false(jn_alerter_is_firing(a, "IntegrationDegraded", twice, 2, NULL));
    jn_alerter_destroy(a);
}

/* ---- the webhook sink ---------------------------------------------------------------- */

/* Verifies a Standard Webhooks signature as a receiver does. */
static void assert_signed(const seen_t *s)
{
    uint8_t *key = NULL, mac[JN_SHA256_LEN];
    size_t key_len = 0, b64len = 0;
    char *content = NULL, *b64 = NULL, expect[256];

    assert_int_equal(jn_base64_decode(SECRET_B64, strlen(SECRET_B64), &key, &key_len), 0);
    assert_true(asprintf(&content, "%s.%s.%s", s->id, s->ts, s->body) > 0);
    assert_int_equal(jn_hmac_sha256(key, key_len, content, strlen(content), mac), 0);
    assert_int_equal(jn_base64_encode(mac, sizeof(mac), &b64, &b64len), 0);
    snprintf(expect, sizeof(expect), "v1,%s", b64);
    assert_string_equal(s->sig, expect);
    assert_true(strncmp(s->id, "alert_", 6) == 0);
    free(key);
    free(content);
    free(b64);
}

static void test_webhook_signed(void **state)
{
    fx_t *f = *state;
    jn_alerter_opts_t o;
    jn_alerter_t *a;
    jn_alert_t al = alert_a(JN_ALERT_WARNING);
    jn_alerter_stats_t st;
    char err[256], ts[32], *text;

    jn_alerter_opts_init(&o);
    a = make(f, JN_ALERT_SINK_WEBHOOK | JN_ALERT_SINK_LOG, &o);
    assert_int_equal(jn_alerter_fire(a, &al, err, sizeof(err)), 1);
    assert_int_equal(jn_alerter_fire(a, &al, err, sizeof(err)), 0);
    RUN_UNTIL(f, f->nseen == 1);
    assert_string_equal(f->seen[0].path, "/hook");
    assert_signed(&f->seen[0]);
    snprintf(ts, sizeof(ts), "%lld", (long long)(f->now / 1000));
    assert_string_equal(f->seen[0].ts, ts);
    assert_has(f->seen[0].body, "\"type\":\"alert.firing\"",
               "\"alertname\":\"IntegrationDegraded\"", "\"integration_id\":\"int-a\"",
               "\"endsAt\":null", NULL);
    f->now += 60000;
    assert_int_equal(jn_alerter_resolve(a, al.name, labels_a, 3, err, sizeof(err)), 1);
    RUN_UNTIL(f, f->nseen == 2);
    assert_signed(&f->seen[1]);
    assert_non_null(strstr(f->seen[1].body, "\"type\":\"alert.resolved\""));
    assert_string_not_equal(f->seen[0].id, f->seen[1].id);
    RUN_UNTIL(f, (jn_alerter_stats(a, &st), st.sink[1].delivered == 2));
    assert_sink(&st, 1, (counts_t){.delivered = 2});
    /* the secret is nowhere: not in what was sent, not in the log */
    text = log_text(f);
    assert_null(strstr(text, SECRET_B64));
    assert_null(strstr(f->seen[0].body, SECRET_B64));
    free(text);
    jn_alerter_destroy(a);
}

static void test_webhook_retries_then_gives_up(void **state)
{
    fx_t *f = *state;
    jn_alerter_opts_t o;
    jn_alerter_t *a;
    jn_alert_t al = alert_a(JN_ALERT_WARNING);
    jn_alerter_stats_t st;
    char err[256];

    f->script[0] = 503;
    f->script[1] = 500;
    f->script[2] = 200; /* the first notification arrives at the third attempt */
    f->script[3] = 400; /* the second is refused for good */
    f->nscript = 4;
    jn_alerter_opts_init(&o);
    a = make(f, JN_ALERT_SINK_WEBHOOK, &o);
    assert_int_equal(jn_alerter_fire(a, &al, err, sizeof(err)), 1);
    assert_int_equal(jn_alerter_resolve(a, al.name, labels_a, 3, err, sizeof(err)), 1);
    RUN_UNTIL(f, (jn_alerter_stats(a, &st), st.sink[1].queued == 0));
    assert_int_equal(f->nseen, 4);
    assert_sink(&st, 1, (counts_t){.delivered = 1, .retries = 2, .failed = 1});
    /* a retry keeps the id and is signed again */
    assert_string_equal(f->seen[0].id, f->seen[2].id);
    assert_signed(&f->seen[2]);
    assert_string_not_equal(f->seen[2].id, f->seen[3].id);
    jn_alerter_destroy(a);
}

static void test_bounded_queue_drops_oldest(void **state)
{
    fx_t *f = *state;
    jn_alerter_opts_t o;
    jn_alerter_t *a;
    jn_alerter_stats_t st;
    char err[256], id[16];
    jn_alert_label_t l[1] = {{"integration_id", id}};
    jn_alert_t al = {"IntegrationDegraded", JN_ALERT_WARNING, l, 1, NULL, 0};
    int i;

    f->hold = 1;
    jn_alerter_opts_init(&o);
    o.queue_max = 3;
    a = make(f, JN_ALERT_SINK_WEBHOOK, &o);
    snprintf(id, sizeof(id), "int-0");
    assert_int_equal(jn_alerter_fire(a, &al, err, sizeof(err)), 1);
    RUN_UNTIL(f, f->nheld == 1); /* int-0 is in flight */
    for (i = 1; i <= 5; i++) {
        snprintf(id, sizeof(id), "int-%d", i);
        assert_int_equal(jn_alerter_fire(a, &al, err, sizeof(err)), 1); /* never blocks */
    }
    jn_alerter_stats(a, &st);
    assert_sink(&st, 1, (counts_t){.dropped = 3, .queued = 3});
    f->hold = 0;
    jn_http_respond_json(f->held[0], 200, "{}", 2);
    f->nheld = 0;
    RUN_UNTIL(f, (jn_alerter_stats(a, &st), st.sink[1].queued == 0));
    assert_sink(&st, 1, (counts_t){.delivered = 3, .dropped = 3});
    /* the in-flight one, then the newest two survived */
    assert_int_equal(f->nseen, 3);
    assert_non_null(strstr(f->seen[0].body, "\"int-0\""));
    assert_non_null(strstr(f->seen[1].body, "\"int-4\""));
    assert_non_null(strstr(f->seen[2].body, "\"int-5\""));
    jn_alerter_destroy(a);
}

/* ---- the Alertmanager sink --------------------------------------------------------- */

static void test_alertmanager_post_resend_resolve(void **state)
{
    fx_t *f = *state;
    jn_alerter_opts_t o;
    jn_alerter_t *a;
    jn_alert_t al = alert_a(JN_ALERT_CRITICAL);
    char err[256], t[32], expect[64];

    jn_alerter_opts_init(&o);
    o.resend_ms = 50;
    a = make(f, JN_ALERT_SINK_ALERTMANAGER, &o);
    assert_int_equal(jn_alerter_fire(a, &al, err, sizeof(err)), 1);
    RUN_UNTIL(f, f->nseen >= 1);
    assert_string_equal(f->seen[0].path, "/am/api/v2/alerts");
    assert_int_equal(f->seen[0].body[0], '[');
    assert_has(f->seen[0].body, "\"alertname\":\"IntegrationUnhealthy\"",
               "\"severity\":\"critical\"", "\"generatorURL\":\"http://127.0.0.1:8080/ui\"", NULL);
    snprintf(expect, sizeof(expect), "\"startsAt\":\"%s\"", jn_format_rfc3339(f->now, t, 32));
    assert_non_null(strstr(f->seen[0].body, expect));
    /* endsAt is three resend intervals ahead */
    snprintf(expect, sizeof(expect), "\"endsAt\":\"%s\"", jn_format_rfc3339(f->now + 150, t, 32));
    assert_non_null(strstr(f->seen[0].body, expect));
    /* posted again while it fires, with endsAt moved on */
    f->now += 1000;
    RUN_UNTIL(f, f->nseen >= 2);
    snprintf(expect, sizeof(expect), "\"endsAt\":\"%s\"", jn_format_rfc3339(f->now + 150, t, 32));
    assert_non_null(strstr(f->seen[f->nseen - 1].body, expect));
    /* resolved: endsAt is now */
    f->now += 1000;
    assert_int_equal(jn_alerter_resolve(a, al.name, labels_a, 3, err, sizeof(err)), 1);
    {
        size_t before = f->nseen;
        snprintf(expect, sizeof(expect), "\"endsAt\":\"%s\"", jn_format_rfc3339(f->now, t, 32));
        RUN_UNTIL(f, f->nseen > before && strstr(f->seen[f->nseen - 1].body, expect) != NULL);
    }
    jn_alerter_destroy(a);
}

static void test_alertmanager_down_is_retried(void **state)
{
    fx_t *f = *state;
    jn_alerter_opts_t o;
    jn_alerter_t *a;
    jn_alert_t al = alert_a(JN_ALERT_WARNING);
    jn_alerter_stats_t st;
    char err[256];

    jn_alerter_opts_init(&o);
    o.sinks = JN_ALERT_SINK_ALERTMANAGER;
    o.loop = &f->loop;
    o.alertmanager_url = "http://127.0.0.1:1"; /* nothing listens there */
    o.retry_base_ms = 5;
    o.retry_max_ms = 10;
    o.max_attempts = 3;
    a = jn_alerter_create(&o, err, sizeof(err));
    assert_non_null(a);
    assert_int_equal(jn_alerter_fire(a, &al, err, sizeof(err)), 1);
    RUN_UNTIL(f, (jn_alerter_stats(a, &st), st.sink[2].failed == 1));
    assert_sink(&st, 2, (counts_t){.retries = 2, .failed = 1});
    jn_alerter_destroy(a);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_keys),
        T(test_create_validates),
        T(test_dedup_escalate_resolve),
        T(test_invalid_alerts),
        T(test_webhook_signed),
        T(test_webhook_retries_then_gives_up),
        T(test_bounded_queue_drops_oldest),
        T(test_alertmanager_post_resend_resolve),
        T(test_alertmanager_down_is_retried),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
