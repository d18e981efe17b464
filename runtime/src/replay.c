#include "replay.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "job_internal.h"
#include "json_canon.h"
#include "junction/crypto.h"
#include "junction/error.h"
#include "junction/json.h"
#include "junction/log.h"
#include "junction/net.h"
#include "junction/redact.h"

/* A fixture file may hold a whole response body (http_max_response_bytes is
 * 32 MiB by default), escaped. */
#define FIXTURE_MAX_BYTES (96u * 1024 * 1024)
#define MAX_HOSTS 64

enum { MODE_RECORD, MODE_REPLAY };

typedef struct {
    char *name, *value;
} header_t;

/* One recorded exchange (replay). */
typedef struct {
    char *file;
    char *method, *url, *url_sha256, *body_sha256;
    long status;
    int error; /* jn_http_error_t; JN_HTTP_OK: a response */
    char *message;
    header_t *headers;
    size_t nheaders;
    char *body;
    size_t body_len;
    size_t served; /* times it answered */
} exchange_t;

typedef struct call {
    struct jn_fixtures *f;
    struct call *prev, *next;
    jn_job_t *job;
    jn_traffic_done_fn done;
    void *ud;
    /* record */
    jn_traffic_call_t *tc;
    char *method, *url, *body;
    size_t body_len;
    char **headers;
    size_t nheaders;
    /* replay */
    exchange_t *ex;
    uv_timer_t timer;
} call_t;

struct jn_fixtures {
    jn_transport_t transport; /* first: the transport functions cast back */
    int mode;
    jn_runtime_t *rt;
    uv_loop_t *loop;
    char *dir;
    size_t next_index, written;
    exchange_t *ex;
    size_t nex;
    char **misses;
    size_t nmisses;
    char *hosts[MAX_HOSTS];
    size_t nhosts;
    call_t *calls;
};

/* ---- small helpers ---- */

static void sha256_hex(const void *data, size_t len, char out[65])
{
    uint8_t d[JN_SHA256_LEN];

    if (jn_sha256(data ? data : "", len, d) != 0)
        memset(d, 0, sizeof(d));
    jn_hex_encode(d, sizeof(d), out);
}

static int utf8_valid(const char *s, size_t len)
{
    size_t i = 0, n;

    while (i < len) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        n = jn_json_utf8_len(s + i, len - i);
        if (n == 0)
            return 0;
        i += n;
    }
    return 1;
}

/* Exchange files: "<4 digits>-...json". */
static int is_exchange_file(const char *name)
{
    size_t n = strlen(name);

    return n > 10 && isdigit((unsigned char)name[0]) && isdigit((unsigned char)name[1]) &&
           isdigit((unsigned char)name[2]) && isdigit((unsigned char)name[3]) && name[4] == '-' &&
           strcmp(name + n - 5, ".json") == 0;
}

static int sensitive_header(const char *name, size_t len)
{
    return jn_redact_is_sensitive_key(name, len) ||
           (len == 6 && strncasecmp(name, "cookie", 6) == 0) ||
           (len == 10 && strncasecmp(name, "set-cookie", 10) == 0) ||
           (len == 19 && strncasecmp(name, "proxy-authorization", 19) == 0);
}

static char *scrub(const char *s, size_t len)
{
    return jn_redactor_scrub_dup(jn_redactor_global(), s ? s : "", s ? len : 0);
}

static void calls_unlink(jn_fixtures_t *f, call_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (f->calls == c)
        f->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void calls_link(jn_fixtures_t *f, call_t *c)
{
    c->next = f->calls;
    if (f->calls)
        f->calls->prev = c;
    f->calls = c;
}

static void call_free(call_t *c)
{
    size_t i;

    for (i = 0; i < c->nheaders; i++)
        free(c->headers[i]);
    free(c->headers);
    free(c->method);
    free(c->url);
    free(c->body);
    free(c);
}

/* ---- recording ---- */

/* "0007-get-127-0-0-1-8080-orgs-acme.json" */
static void exchange_name(const jn_fixtures_t *f, const char *method, const char *url, char *buf,
                          size_t len)
{
    char slug[64], verb[16];
    const char *p = strstr(url, "://");
    size_t n = 0, i;
    int dash = 0;

    for (i = 0; method[i] && i < sizeof(verb) - 1; i++)
        verb[i] = (char)tolower((unsigned char)method[i]);
    verb[i] = '\0';

    for (p = p ? p + 3 : url; *p && *p != '?' && *p != '#' && n < sizeof(slug) - 1; p++) {
        if (isalnum((unsigned char)*p)) {
            slug[n++] = (char)tolower((unsigned char)*p);
            dash = 0;
        } else if (!dash && n > 0) {
            slug[n++] = '-';
            dash = 1;
        }
    }
    while (n > 0 && slug[n - 1] == '-')
        n--;
    slug[n] = '\0';
    snprintf(buf, len, "%s/%04zu-%s-%s.json", f->dir, f->next_index, verb, slug);
}

/* Appends "name": <string or base64 string> for a body that may be binary. */
static int put_body(jn_buf_t *b, const char *indent, const char *name, const char *body, size_t len)
{
    char *clean, *b64 = NULL;
    size_t b64len = 0;
    int rc;

    if (utf8_valid(body, len)) {
        clean = scrub(body, len);
        if (clean == NULL)
            return -1;
        rc = jn_buf_puts(b, indent) || jn_buf_puts(b, "\"") || jn_buf_puts(b, name) ||
             jn_buf_puts(b, "\": ") || jn_json_append_string(b, clean, strlen(clean));
        free(clean);
        return rc ? -1 : 0;
    }
    /* binary: not scrubbed (the redactor works on text), base64 */
    if (jn_base64_encode((const uint8_t *)body, len, &b64, &b64len) != 0)
        return -1;
    rc = jn_buf_puts(b, indent) || jn_buf_puts(b, "\"") || jn_buf_puts(b, name) ||
         jn_buf_puts(b, "_base64\": ") || jn_json_append_string(b, b64, b64len);
    free(b64);
    return rc ? -1 : 0;
}

static int put_string_member(jn_buf_t *b, const char *indent, const char *name, const char *value)
{
    return jn_buf_puts(b, indent) || jn_buf_puts(b, "\"") || jn_buf_puts(b, name) ||
                   jn_buf_puts(b, "\": ") || jn_json_append_string(b, value, strlen(value))
               ? -1
               : 0;
}

static int put_header_value(jn_buf_t *b, const char *name, size_t nlen, const char *value)
{
    char *clean;
    int rc;

    if (sensitive_header(name, nlen))
        return jn_json_append_string(b, JN_REDACTED, strlen(JN_REDACTED)) ? -1 : 0;
    clean = scrub(value, strlen(value));
    if (clean == NULL)
        return -1;
    rc = utf8_valid(clean, strlen(clean)) ? jn_json_append_string(b, clean, strlen(clean))
                                          : jn_json_append_string(b, JN_REDACTED, 10);
    free(clean);
    return rc ? -1 : 0;
}

static int encode_exchange(const call_t *c, const jn_http_response_t *resp, jn_buf_t *b)
{
    char body_sha[65], url_sha[65], name[128], *url;
    size_t i, nl;
    int rc = 0;

    sha256_hex(c->body, c->body_len, body_sha);
    url = scrub(c->url, strlen(c->url));
    if (url == NULL)
        return -1;
    rc |= jn_buf_puts(b, "{\n  \"request\": {\n");
    rc |= put_string_member(b, "    ", "method", c->method);
    rc |= jn_buf_puts(b, ",\n");
    rc |= put_string_member(b, "    ", "url", utf8_valid(url, strlen(url)) ? url : JN_REDACTED);
    rc |= jn_buf_puts(b, ",\n");
    if (strcmp(url, c->url) != 0) {
        /* the URL held something secret-shaped: match on its hash */
        sha256_hex(c->url, strlen(c->url), url_sha);
        rc |= put_string_member(b, "    ", "url_sha256", url_sha);
        rc |= jn_buf_puts(b, ",\n");
    }
    free(url);
    rc |= put_string_member(b, "    ", "body_sha256", body_sha);
    rc |= jn_buf_puts(b, ",\n    \"headers\": {");
    for (i = 0; i < c->nheaders; i++) {
        const char *colon = strchr(c->headers[i], ':'), *v;
        if (colon == NULL)
            continue;
        nl = (size_t)(colon - c->headers[i]);
        snprintf(name, sizeof(name), "%.*s", (int)(nl < sizeof(name) ? nl : sizeof(name) - 1),
                 c->headers[i]);
        for (char *p = name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        for (v = colon + 1; *v == ' '; v++)
            ;
        rc |= jn_buf_puts(b, i ? ",\n      " : "\n      ");
        rc |= jn_json_append_string(b, name, strlen(name));
        rc |= jn_buf_puts(b, ": ");
        rc |= put_header_value(b, name, strlen(name), v);
    }
    rc |= jn_buf_puts(b, c->nheaders ? "\n    }" : "}");
    if (c->body_len > 0) {
        rc |= jn_buf_puts(b, ",\n");
        rc |= put_body(b, "    ", "body", c->body, c->body_len);
    }
    rc |= jn_buf_puts(b, "\n  },\n  \"response\": {\n");
    if (resp->error != JN_HTTP_OK) {
        char *msg = scrub(resp->error_msg, strlen(resp->error_msg));
        rc |= put_string_member(b, "    ", "error", jn_http_error_name(resp->error));
        rc |= jn_buf_puts(b, ",\n");
        rc |= put_string_member(b, "    ", "message", msg ? msg : "");
        free(msg);
    } else {
        snprintf(name, sizeof(name), "    \"status\": %ld,\n    \"headers\": [", resp->status);
        rc |= jn_buf_puts(b, name);
        for (i = 0; i < resp->nheaders; i++) {
            const char *hn = resp->headers[i].name;
            rc |= jn_buf_puts(b, i ? ",\n      [" : "\n      [");
            rc |= jn_json_append_string(b, hn, strlen(hn));
            rc |= jn_buf_puts(b, ", ");
            rc |= put_header_value(b, hn, strlen(hn), resp->headers[i].value);
            rc |= jn_buf_puts(b, "]");
        }
        rc |= jn_buf_puts(b, resp->nheaders ? "\n    ],\n" : "],\n");
        rc |= put_body(b, "    ", "body", resp->body ? resp->body : "",
                       resp->body ? resp->body_len : 0);
    }
    rc |= jn_buf_puts(b, "\n  }\n}\n");
    return rc ? -1 : 0;
}

static void write_exchange(jn_fixtures_t *f, const call_t *c, const jn_http_response_t *resp)
{
    jn_buf_t b = {0};
    char path[4096];
    FILE *out;

    exchange_name(f, c->method, c->url, path, sizeof(path));
    if (encode_exchange(c, resp, &b) != 0) {
        jn_log_error("fixtures: cannot encode the exchange of %s %s", c->method, path);
        jn_buf_free(&b);
        return;
    }
    out = fopen(path, "wb");
    if (out == NULL || fwrite(b.data, 1, b.len, out) != b.len) {
        jn_log_error("fixtures: cannot write '%s': %s", path, strerror(errno));
    } else {
        f->next_index++;
        f->written++;
    }
    if (out)
        fclose(out);
    jn_buf_free(&b);
}

static void on_recorded(jn_http_response_t *resp, const jn_traffic_info_t *info, void *ud)
{
    call_t *c = ud;

    calls_unlink(c->f, c);
    write_exchange(c->f, c, resp);
    c->done(resp, info, c->ud);
    call_free(c);
}

static int record_send(jn_transport_t *t, jn_job_t *job, const char *url,
                       const jn_traffic_opts_t *opts, const jn_http_request_t *req,
                       jn_traffic_done_fn done, void *ud, char *err, size_t errlen)
{
    jn_fixtures_t *f = (jn_fixtures_t *)t;
    call_t *c = calloc(1, sizeof(*c));
    size_t i;
    int rc;

    if (c == NULL) {
        jn_errorf(err, errlen, "out of memory");
        return JN_HTTP_EINTERNAL;
    }
    c->f = f;
    c->job = job;
    c->done = done;
    c->ud = ud;
    c->method = strdup(req->method ? req->method : "GET");
    c->url = strdup(url ? url : req->url);
    c->headers = calloc(req->nheaders ? req->nheaders : 1, sizeof(char *));
    if (req->body_len > 0 && (c->body = malloc(req->body_len)) != NULL) {
        memcpy(c->body, req->body, req->body_len);
        c->body_len = req->body_len;
    }
    if (!c->method || !c->url || !c->headers || (req->body_len > 0 && !c->body))
        goto oom;
    for (i = 0; i < req->nheaders; i++) {
        if ((c->headers[i] = strdup(req->headers[i])) == NULL)
            goto oom;
        c->nheaders++;
    }
    rc = jn_traffic_send(f->rt->traffic, opts, req, on_recorded, c, &c->tc, err, errlen);
    if (rc != JN_HTTP_OK) {
        call_free(c);
        return rc;
    }
    calls_link(f, c);
    return JN_HTTP_OK;
oom:
    call_free(c);
    jn_errorf(err, errlen, "out of memory");
    return JN_HTTP_EINTERNAL;
}

/* ---- replaying ---- */

static void on_timer_closed(uv_handle_t *h)
{
    call_free(h->data);
}

static jn_http_response_t *response_of(const exchange_t *ex, const char *url)
{
    jn_http_response_t *resp = calloc(1, sizeof(*resp));
    size_t i;

    if (resp == NULL)
        return NULL;
    resp->error = (jn_http_error_t)ex->error;
    if (ex->error != JN_HTTP_OK) {
        snprintf(resp->error_msg, sizeof(resp->error_msg), "%s", ex->message ? ex->message : "");
        return resp;
    }
    resp->status = ex->status;
    resp->headers = calloc(ex->nheaders ? ex->nheaders : 1, sizeof(jn_http_header_t));
    resp->body = malloc(ex->body_len + 1);
    resp->effective_url = strdup(url);
    if (resp->headers == NULL || resp->body == NULL || resp->effective_url == NULL)
        goto oom;
    for (i = 0; i < ex->nheaders; i++) {
        resp->headers[i].name = strdup(ex->headers[i].name);
        resp->headers[i].value = strdup(ex->headers[i].value);
        resp->nheaders++;
        if (!resp->headers[i].name || !resp->headers[i].value)
            goto oom;
    }
    memcpy(resp->body, ex->body, ex->body_len);
    resp->body[ex->body_len] = '\0';
    resp->body_len = ex->body_len;
    return resp;
oom:
    jn_http_response_free(resp);
    return NULL;
}

static void on_replay(uv_timer_t *t)
{
    call_t *c = t->data;
    jn_traffic_info_t info = {0};
    jn_http_response_t *resp;

    calls_unlink(c->f, c);
    resp = response_of(c->ex, c->url);
    if (resp == NULL) {
        resp = calloc(1, sizeof(*resp));
        if (resp != NULL) {
            resp->error = JN_HTTP_EINTERNAL;
            snprintf(resp->error_msg, sizeof(resp->error_msg), "%s %s: out of memory", c->method,
                     c->url);
        }
    }
    info.attempts = 1;
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    if (resp != NULL)
        c->done(resp, &info, c->ud);
}

static exchange_t *find_exchange(jn_fixtures_t *f, const char *method, const char *url,
                                 const char *body_sha)
{
    exchange_t *last = NULL;
    char url_sha[65];
    size_t i;

    sha256_hex(url, strlen(url), url_sha);
    for (i = 0; i < f->nex; i++) {
        exchange_t *e = &f->ex[i];
        if (strcasecmp(e->method, method) != 0 || strcmp(e->body_sha256, body_sha) != 0)
            continue;
        if (strcmp(e->url, url) != 0 && (e->url_sha256 == NULL || strcmp(e->url_sha256, url_sha)))
            continue;
        /* same key recorded several times: in order, the last one repeating */
        if (e->served == 0)
            return e;
        last = e;
    }
    return last;
}

static int replay_send(jn_transport_t *t, jn_job_t *job, const char *url,
                       const jn_traffic_opts_t *opts, const jn_http_request_t *req,
                       jn_traffic_done_fn done, void *ud, char *err, size_t errlen)
{
    jn_fixtures_t *f = (jn_fixtures_t *)t;
    const char *method = req->method ? req->method : "GET";
    char body_sha[65], shown[512], **grown;
    exchange_t *ex;
    call_t *c;

    (void)opts;
    sha256_hex(req->body, req->body_len, body_sha);
    ex = find_exchange(f, method, url, body_sha);
    if (ex == NULL) {
        char *clean = scrub(url, strlen(url));
        char *miss = clean ? malloc(strlen(method) + strlen(clean) + 2) : NULL;
        jn_http_shown_url(url, shown, sizeof(shown));
        if (miss != NULL && (grown = realloc(f->misses, (f->nmisses + 1) * sizeof(*grown)))) {
            sprintf(miss, "%s %s", method, clean);
            f->misses = grown;
            f->misses[f->nmisses++] = miss;
        } else {
            free(miss);
        }
        free(clean);
        jn_errorf(err, errlen,
                  "no recorded exchange for %s %s (body sha256 %.12s...) in '%s'; record the "
                  "fixtures again with `junction connector test FILE --record`",
                  method, shown, body_sha, f->dir);
        return JN_HTTP_EDENIED;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL || (c->url = strdup(url)) == NULL || (c->method = strdup(method)) == NULL) {
        if (c)
            call_free(c);
        jn_errorf(err, errlen, "out of memory");
        return JN_HTTP_EINTERNAL;
    }
    ex->served++;
    c->f = f;
    c->job = job;
    c->done = done;
    c->ud = ud;
    c->ex = ex;
    uv_timer_init(f->loop, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, on_replay, 0, 0);
    calls_link(f, c);
    return JN_HTTP_OK;
}

static void fixtures_cancel(jn_transport_t *t, jn_job_t *job)
{
    jn_fixtures_t *f = (jn_fixtures_t *)t;
    call_t *c = f->calls, *next;

    for (; c != NULL; c = next) {
        next = c->next;
        if (c->job != job)
            continue;
        calls_unlink(f, c);
        if (f->mode == MODE_RECORD) {
            jn_traffic_cancel(c->tc);
            call_free(c);
        } else {
            uv_timer_stop(&c->timer);
            uv_close((uv_handle_t *)&c->timer, on_timer_closed);
        }
    }
}

/* ---- loading ---- */

static void exchange_clear(exchange_t *e)
{
    size_t i;

    for (i = 0; i < e->nheaders; i++) {
        free(e->headers[i].name);
        free(e->headers[i].value);
    }
    free(e->headers);
    free(e->file);
    free(e->method);
    free(e->url);
    free(e->url_sha256);
    free(e->body_sha256);
    free(e->message);
    free(e->body);
}

static char *json_dup(const jn_json_t *node, size_t *len)
{
    size_t n = 0;
    const char *s = jn_json_string(node, &n);
    char *d;

    if (s == NULL)
        return NULL;
    d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
        if (len)
            *len = n;
    }
    return d;
}

static int error_code(const char *name)
{
    int i;

    for (i = JN_HTTP_OK + 1; i <= JN_HTTP_ERATELIMITED; i++)
        if (strcmp(jn_http_error_name((jn_http_error_t)i), name) == 0)
            return i;
    return -1;
}

static void add_host(jn_fixtures_t *f, const char *url)
{
    char scheme[16], host[256], hp[300];
    int port;
    size_t i;

    if (jn_url_origin(url, scheme, sizeof(scheme), host, sizeof(host), &port) != 0)
        return;
    snprintf(hp, sizeof(hp), "%s:%d", host, port);
    for (i = 0; i < f->nhosts; i++)
        if (strcmp(f->hosts[i], hp) == 0)
            return;
    if (f->nhosts < MAX_HOSTS && (f->hosts[f->nhosts] = strdup(hp)) != NULL)
        f->nhosts++;
}

/* Fills e from the parsed file; -1 with what is wrong in err. */
static int exchange_from_json(exchange_t *e, const jn_json_t *root, char *err, size_t errlen)
{
    const jn_json_t *req = jn_json_get(root, "request"), *resp = jn_json_get(root, "response");
    const jn_json_t *h, *m;
    int64_t status;

    if (!jn_json_is_object(req) || !jn_json_is_object(resp))
        return jn_errorf(err, errlen, "expected an object with 'request' and 'response'");
    e->method = json_dup(jn_json_get(req, "method"), NULL);
    e->url = json_dup(jn_json_get(req, "url"), NULL);
    e->body_sha256 = json_dup(jn_json_get(req, "body_sha256"), NULL);
    if (jn_json_get(req, "url_sha256"))
        e->url_sha256 = json_dup(jn_json_get(req, "url_sha256"), NULL);
    if (!e->method || !e->url || !e->body_sha256 || strlen(e->body_sha256) != 64)
        return jn_errorf(err, errlen, "'request' needs 'method', 'url' and 'body_sha256' (64 hex)");
    if ((m = jn_json_get(resp, "error")) != NULL) {
        char *name = json_dup(m, NULL);
        e->error = name ? error_code(name) : -1;
        free(name);
        if (e->error < 0)
            return jn_errorf(err, errlen, "'response.error' is not a transport error name");
        e->message = json_dup(jn_json_get(resp, "message"), NULL);
        return 0;
    }
    if (jn_json_int64(jn_json_get(resp, "status"), &status) != 0 || status < 100 || status > 999)
        return jn_errorf(err, errlen, "'response.status' must be an HTTP status");
    e->status = (long)status;
    h = jn_json_get(resp, "headers");
    if (h != NULL && !jn_json_is_array(h))
        return jn_errorf(err, errlen, "'response.headers' must be a list of [name, value]");
    e->headers = calloc(jn_json_count(h) + 1, sizeof(header_t));
    if (e->headers == NULL)
        return jn_errorf(err, errlen, "out of memory");
    for (m = jn_json_first(h); m != NULL; m = jn_json_next(m)) {
        char *name = json_dup(jn_json_at(m, 0), NULL), *value = json_dup(jn_json_at(m, 1), NULL);
        if (name == NULL || value == NULL || jn_json_count(m) != 2) {
            free(name);
            free(value);
            return jn_errorf(err, errlen, "'response.headers' entries must be [name, value]");
        }
        for (char *p = name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        e->headers[e->nheaders].name = name;
        e->headers[e->nheaders++].value = value;
    }
    if ((m = jn_json_get(resp, "body_base64")) != NULL) {
        size_t n = 0;
        const char *s = jn_json_string(m, &n);
        uint8_t *raw = NULL;
        size_t rawlen = 0;
        if (s == NULL || jn_base64_decode(s, n, &raw, &rawlen) != 0)
            return jn_errorf(err, errlen, "'response.body_base64' is not base64");
        e->body = (char *)raw;
        e->body_len = rawlen;
    } else {
        e->body = json_dup(jn_json_get(resp, "body"), &e->body_len);
        if (e->body == NULL)
            return jn_errorf(err, errlen, "'response.body' must be a string");
    }
    return 0;
}

static int load_exchange(jn_fixtures_t *f, const char *name, char *err, size_t errlen)
{
    jn_json_limits_t limits = {FIXTURE_MAX_BYTES, 0, 0};
    jn_json_error_t jerr;
    jn_json_t *root = NULL;
    exchange_t *grown, *e;
    char path[4096], why[512];
    struct stat st;
    char *text = NULL;
    FILE *in;
    int rc = -1;

    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    if (stat(path, &st) != 0 || st.st_size > (off_t)FIXTURE_MAX_BYTES)
        return jn_errorf(err, errlen, "%s: cannot read (or larger than %u bytes)", path,
                         FIXTURE_MAX_BYTES);
    in = fopen(path, "rb");
    text = malloc((size_t)st.st_size + 1);
    if (in == NULL || text == NULL ||
        fread(text, 1, (size_t)st.st_size, in) != (size_t)st.st_size) {
        jn_errorf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        goto done;
    }
    if (jn_json_parse(text, (size_t)st.st_size, &limits, &root, &jerr) != 0) {
        jn_errorf(err, errlen, "%s: not JSON: %s", path, jerr.message);
        goto done;
    }
    grown = realloc(f->ex, (f->nex + 1) * sizeof(*grown));
    if (grown == NULL) {
        jn_errorf(err, errlen, "out of memory");
        goto done;
    }
    f->ex = grown;
    e = &f->ex[f->nex++];
    memset(e, 0, sizeof(*e));
    e->file = strdup(name);
    if (exchange_from_json(e, root, why, sizeof(why)) != 0) {
        jn_errorf(err, errlen, "%s: %s", path, why);
        goto done;
    }
    add_host(f, e->url);
    rc = 0;
done:
    if (in)
        fclose(in);
    free(text);
    jn_json_free(root);
    return rc;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The exchange file names of dir, sorted. -1 when dir cannot be read. */
static int list_exchanges(const char *dir, char ***names, size_t *n)
{
    struct dirent *e;
    DIR *d = opendir(dir);
    size_t cap = 0;

    *names = NULL;
    *n = 0;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL) {
        char **grown;
        if (!is_exchange_file(e->d_name))
            continue;
        if (*n == cap) {
            grown = realloc(*names, (cap = cap ? cap * 2 : 32) * sizeof(char *));
            if (grown == NULL)
                break;
            *names = grown;
        }
        if (((*names)[*n] = strdup(e->d_name)) != NULL)
            (*n)++;
    }
    closedir(d);
    if (*n > 0)
        qsort(*names, *n, sizeof(char *), cmp_names);
    return 0;
}

static void free_names(char **names, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static jn_fixtures_t *fixtures_new(int mode, const char *dir)
{
    jn_fixtures_t *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return NULL;
    f->mode = mode;
    f->dir = strdup(dir);
    if (f->dir == NULL) {
        free(f);
        return NULL;
    }
    f->transport.send = mode == MODE_RECORD ? record_send : replay_send;
    f->transport.cancel = fixtures_cancel;
    return f;
}

jn_fixtures_t *jn_fixtures_record(jn_runtime_t *rt, const char *dir, char *err, size_t errlen)
{
    char **names;
    size_t n, i;
    jn_fixtures_t *f;

    if (jn_mkdir_p(dir) != 0) {
        jn_errorf(err, errlen, "fixtures directory '%s' cannot be created: %s", dir,
                  strerror(errno));
        return NULL;
    }
    f = fixtures_new(MODE_RECORD, dir);
    if (f == NULL) {
        jn_errorf(err, errlen, "out of memory");
        return NULL;
    }
    f->rt = rt;
    f->loop = rt->loop;
    f->next_index = 1;
    if (list_exchanges(dir, &names, &n) == 0) {
        for (i = 0; i < n; i++) {
            size_t idx = (size_t)atol(names[i]);
            if (idx >= f->next_index)
                f->next_index = idx + 1;
        }
        free_names(names, n);
    }
    return f;
}

jn_fixtures_t *jn_fixtures_replay(uv_loop_t *loop, const char *dir, char *err, size_t errlen)
{
    char **names;
    size_t n, i;
    jn_fixtures_t *f;

    if (list_exchanges(dir, &names, &n) != 0) {
        jn_errorf(err, errlen,
                  "fixtures directory '%s' cannot be read: %s (record it with `junction connector "
                  "test FILE --record`)",
                  dir, strerror(errno));
        return NULL;
    }
    f = fixtures_new(MODE_REPLAY, dir);
    if (f == NULL) {
        free_names(names, n);
        jn_errorf(err, errlen, "out of memory");
        return NULL;
    }
    f->loop = loop;
    for (i = 0; i < n; i++) {
        if (load_exchange(f, names[i], err, errlen) != 0) {
            free_names(names, n);
            jn_fixtures_destroy(f);
            return NULL;
        }
    }
    free_names(names, n);
    return f;
}

jn_transport_t *jn_fixtures_transport(jn_fixtures_t *f)
{
    return &f->transport;
}

size_t jn_fixtures_count(const jn_fixtures_t *f)
{
    return f->mode == MODE_RECORD ? f->written : f->nex;
}

size_t jn_fixtures_miss_count(const jn_fixtures_t *f)
{
    return f->nmisses;
}

const char *jn_fixtures_miss(const jn_fixtures_t *f, size_t i)
{
    return i < f->nmisses ? f->misses[i] : NULL;
}

const char *jn_fixtures_host(const jn_fixtures_t *f, size_t i)
{
    return i < f->nhosts ? f->hosts[i] : NULL;
}

void jn_fixtures_destroy(jn_fixtures_t *f)
{
    size_t i;
    call_t *c, *next;

    if (f == NULL)
        return;
    for (c = f->calls; c != NULL; c = next) {
        next = c->next;
        if (f->mode == MODE_RECORD) {
            jn_traffic_cancel(c->tc);
            call_free(c);
        } else {
            uv_timer_stop(&c->timer);
            uv_close((uv_handle_t *)&c->timer, on_timer_closed);
        }
    }
    for (i = 0; i < f->nex; i++)
        exchange_clear(&f->ex[i]);
    free(f->ex);
    for (i = 0; i < f->nmisses; i++)
        free(f->misses[i]);
    free(f->misses);
    for (i = 0; i < f->nhosts; i++)
        free(f->hosts[i]);
    free(f->dir);
    free(f);
}

int jn_fixtures_clear(const char *dir, char *err, size_t errlen)
{
    char **names, path[4096];
    size_t n, i;
    int rc = 0;

    if (list_exchanges(dir, &names, &n) != 0)
        return errno == ENOENT ? 0 : jn_errorf(err, errlen, "'%s': %s", dir, strerror(errno));
    for (i = 0; i < n && rc == 0; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (unlink(path) != 0)
            rc = jn_errorf(err, errlen, "cannot remove '%s': %s", path, strerror(errno));
    }
    free_names(names, n);
    return rc;
}
