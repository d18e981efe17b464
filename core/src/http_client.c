#include "junction/http_client.h"

#include "junction/net.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#if LIBCURL_VERSION_NUM < 0x075700
#error "libcurl 7.87.0 or newer is required (PROTOCOLS_STR, PREREQFUNCTION, QUICK_EXIT)"
#endif

#define DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define DEFAULT_TIMEOUT_MS 60000L
#define DEFAULT_MAX_RESPONSE_BYTES ((size_t)32 << 20)
#define DEFAULT_MAX_REDIRECTS 5
#define DEFAULT_USER_AGENT "junction"
#define METHOD_MAX 32
#define URL_SHOWN_MAX 160

typedef struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    jn_http_client_t *client;
    struct sock_ctx *prev, *next;
} sock_ctx_t;

struct jn_http_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    long connect_timeout_ms;
    long timeout_ms;
    size_t max_response_bytes;
    int max_redirects;
    char *ca_file;
    char *user_agent;
    jn_http_call_t *calls;
    sock_ctx_t *socks;
    size_t in_flight;
    /* At most max_active transfers are in the multi (0: no limit); later calls
     * wait in this binary heap, lowest priority value first, then first come
     * first served. curl could queue them itself, but its pending list costs a
     * walk over every waiting handle each time a handle is removed: quadratic
     * with thousands of calls in flight. */
    size_t max_active;
    size_t active;
    jn_http_call_t **wait;
    size_t nwait, wait_cap;
    uint64_t wait_seq;
    bool pumping;
    /* Easy handles of finished calls, reset, for the next calls: allocating
     * a fresh one (several KiB, zeroed) per request was a tenth of the CPU
     * with thousands of jobs. */
    CURL **idle_easy;
    size_t nidle_easy, idle_easy_max;
    int open_handles; /* uv handles not yet through their close callback */
    /* Non-zero while curl or a policy callback is on the stack: cancel and
     * destroy are then deferred, since curl forbids re-entrant multi calls. */
    int busy;
    bool cancel_pending;
    bool destroy_pending;
    bool closing;
};

typedef struct {
    char scheme[8];
    char host[256];
    int port;
} origin_t;

struct jn_http_call {
    jn_http_client_t *client;
    jn_http_call_t *prev, *next;
    uint64_t priority; /* among waiting calls: lower first */
    uint64_t wait_seq; /* then first come first served */
    size_t wait_index; /* in client->wait while waiting */
    CURL *easy;        /* created when the call leaves the wait queue */
    bool in_multi;
    bool waiting;
    bool cancelled;
    struct curl_slist *slist;
    jn_http_done_fn done;
    void *ud;

    char method[METHOD_MAX + 1];
    char *url; /* current hop, canonical form */
    char **headers;
    size_t nheaders;
    char **auth;
    size_t nauth;
    char *body;
    size_t body_len;
    bool has_body;
    bool body_dropped; /* a 301/302/303 turned the request into a GET */
    bool auth_dropped; /* a hop left the original origin */
    origin_t origin;   /* of the original request */
    origin_t hop;      /* of the current hop */

    long connect_timeout_ms;
    long timeout_ms;
    size_t max_bytes;
    int max_redirects;
    jn_http_addr_policy_fn addr_policy;
    jn_http_redirect_policy_fn redirect_policy;
    void *policy_ud;
    uint64_t start_ns;

    /* Per-hop state. */
    bool connect_limited; /* the connect timeout, not the time left, bounds connecting */
    bool connected;
    bool opened_socket;
    int hop_status;
    jn_http_error_t abort_err;
    char abort_detail[128];
    char denied_addr[INET6_ADDRSTRLEN];
    char errbuf[CURL_ERROR_SIZE];

    jn_http_response_t *resp;
    size_t body_cap;
    size_t headers_cap;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

const char *jn_http_error_name(jn_http_error_t err)
{
    static const char *const names[] = {
        "OK",      "EINVAL", "ECONNECT",   "ETIMEDOUT", "ETLS",     "ETOOBIG",      "EREDIRECTS",
        "EDENIED", "EPROTO", "ECANCELLED", "EINTERNAL", "ECIRCUIT", "ERATELIMITED",
    };

    if ((unsigned)err >= sizeof names / sizeof names[0])
        return "EUNKNOWN";
    return names[err];
}

void jn_http_client_opts_init(jn_http_client_opts_t *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    opts->timeout_ms = DEFAULT_TIMEOUT_MS;
    opts->max_response_bytes = DEFAULT_MAX_RESPONSE_BYTES;
    opts->max_redirects = DEFAULT_MAX_REDIRECTS;
}

void jn_http_request_init(jn_http_request_t *req)
{
    memset(req, 0, sizeof *req);
    req->max_redirects = -1;
}

/* ---- small helpers ---- */

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void strv_free(char **v, size_t n, bool wipe)
{
    for (size_t i = 0; v && i < n; i++) {
        if (wipe)
            wipe_free(v[i]);
        else
            free(v[i]);
    }
    free(v);
}

static int strv_dup(const char *const *src, size_t n, char ***out)
{
    char **v = n ? calloc(n, sizeof *v) : NULL;

    *out = v;
    if (n && !v)
        return -1;
    for (size_t i = 0; i < n; i++) {
        v[i] = strdup(src[i]);
        if (!v[i])
            return -1;
    }
    return 0;
}

static void slist_free(struct curl_slist *l)
{
    for (struct curl_slist *p = l; p; p = p->next)
        explicit_bzero(p->data, strlen(p->data));
    curl_slist_free_all(l);
}

static int slist_add(struct curl_slist **l, const char *s)
{
    struct curl_slist *n = curl_slist_append(*l, s);

    if (!n)
        return -1;
    *l = n;
    return 0;
}

static bool is_tchar(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool token_valid(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_tchar((unsigned char)s[i]))
            return false;
    }
    return true;
}

/* "Name: value" with a token name and no control characters (no CR/LF injection). */
static bool header_valid(const char *h)
{
    const char *colon = h ? strchr(h, ':') : NULL;

    if (!colon || !token_valid(h, (size_t)(colon - h)))
        return false;
    for (const char *p = colon + 1; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return false;
    }
    return true;
}

static bool header_is(const char *line, const char *name)
{
    size_t n = strlen(name);

    return strncasecmp(line, name, n) == 0 && line[n] == ':';
}

static bool headers_valid(const char *const *v, size_t n)
{
    if (n && !v)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!header_valid(v[i]))
            return false;
    }
    return true;
}

static bool request_valid(const jn_http_request_t *req)
{
    const char *m = req->method ? req->method : "GET";
    size_t mlen = strlen(m);

    return req->url && mlen <= METHOD_MAX && token_valid(m, mlen) &&
           headers_valid(req->headers, req->nheaders) &&
           headers_valid(req->auth_headers, req->nauth_headers) &&
           (req->body || req->body_len == 0);
}

static int url_origin(const char *url, origin_t *o)
{
    return jn_url_origin(url, o->scheme, sizeof o->scheme, o->host, sizeof o->host, &o->port);
}

static bool origin_equal(const origin_t *a, const origin_t *b)
{
    return a->port == b->port && strcmp(a->scheme, b->scheme) == 0 && strcmp(a->host, b->host) == 0;
}

/* Resolves `ref` against `base` (NULL for an absolute URL) into curl's canonical
 * form, so that the origin checks here and curl's own parser see the same host. */
static int canonical_url(const char *base, const char *ref, char **out)
{
    CURLU *u = curl_url();
    char *tmp = NULL;
    int rc = -1;

    *out = NULL;
    if (!u)
        return -1;
    if (base && curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK)
        goto done;
    if (curl_url_set(u, CURLUPART_URL, ref, base ? CURLU_ALLOW_SPACE : 0) != CURLUE_OK)
        goto done;
    curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
    if (curl_url_get(u, CURLUPART_URL, &tmp, CURLU_URLENCODE) != CURLUE_OK)
        goto done;
    *out = strdup(tmp);
    rc = *out ? 0 : -1;
done:
    curl_free(tmp);
    curl_url_cleanup(u);
    return rc;
}

/* scheme://host[:port]/path: no userinfo, query or fragment, which may carry secrets. */
void jn_http_shown_url(const char *url, char *buf, size_t len)
{
    const char *sep, *auth, *at, *rest;
    size_t alen;

    if (!url)
        url = "";
    sep = strstr(url, "://");
    auth = sep ? sep + 3 : url;
    alen = strcspn(auth, "/?#");
    at = memrchr(auth, '@', alen);
    rest = at ? at + 1 : auth;
    snprintf(buf, len, "%.*s%.*s", (int)(auth - url), url, (int)strcspn(rest, "?#"), rest);
}

static long elapsed_ms(const jn_http_call_t *call)
{
    return (long)((uv_hrtime() - call->start_ns) / 1000000u);
}

/* ---- response building ---- */

static void response_clear(jn_http_response_t *resp)
{
    for (size_t i = 0; i < resp->nheaders; i++) {
        free(resp->headers[i].name);
        free(resp->headers[i].value);
    }
    resp->nheaders = 0;
    resp->body_len = 0;
    if (resp->body)
        resp->body[0] = '\0';
}

static int body_reserve(jn_http_call_t *call, size_t need)
{
    jn_http_response_t *resp = call->resp;
    size_t cap = call->body_cap ? call->body_cap : 4096;
    char *p;

    if (need <= call->body_cap)
        return 0;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > call->max_bytes + 1 && need <= call->max_bytes + 1)
        cap = call->max_bytes + 1;
    p = realloc(resp->body, cap);
    if (!p)
        return -1;
    resp->body = p;
    call->body_cap = cap;
    return 0;
}

static void set_abort(jn_http_call_t *call, jn_http_error_t err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_abort(jn_http_call_t *call, jn_http_error_t err, const char *fmt, ...)
{
    va_list ap;

    call->abort_err = err;
    va_start(ap, fmt);
    vsnprintf(call->abort_detail, sizeof call->abort_detail, fmt, ap);
    va_end(ap);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
    jn_http_call_t *call = ud;
    jn_http_response_t *resp = call->resp;
    size_t n = size * nmemb;

    if (n > call->max_bytes - resp->body_len) {
        set_abort(call, JN_HTTP_ETOOBIG, "response body over %zu bytes", call->max_bytes);
        return 0;
    }
    if (body_reserve(call, resp->body_len + n + 1) != 0) {
        set_abort(call, JN_HTTP_EINTERNAL, "out of memory");
        return 0;
    }
    memcpy(resp->body + resp->body_len, data, n);
    resp->body_len += n;
    resp->body[resp->body_len] = '\0';
    return n;
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

static void trim(const char **s, size_t *n)
{
    while (*n && is_space((*s)[0])) {
        (*s)++;
        (*n)--;
    }
    while (*n && is_space((*s)[*n - 1]))
        (*n)--;
}

static int parse_status(const char *line, size_t n)
{
    const char *sp = memchr(line, ' ', n);
    size_t left = sp ? n - (size_t)(sp - line) - 1 : 0;

    if (left < 3 || sp[1] < '1' || sp[1] > '9' || sp[2] < '0' || sp[2] > '9' || sp[3] < '0' ||
        sp[3] > '9')
        return 0;
    return (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
}

/* False for responses whose Content-Length announces no body (HEAD, 1xx, 204, 304). */
static bool body_expected(const jn_http_call_t *call)
{
    int s = call->hop_status;

    return strcmp(call->method, "HEAD") != 0 && s >= 200 && s != 204 && s != 304;
}

/* Rejects an oversized body before any of it is read. */
static int check_content_length(jn_http_call_t *call, const char *v, size_t n)
{
    unsigned long long len = 0;

    if (!body_expected(call))
        return 0;
    for (size_t i = 0; i < n && v[i] >= '0' && v[i] <= '9'; i++) {
        if (len > (ULLONG_MAX - 9) / 10)
            break;
        len = len * 10 + (unsigned long long)(v[i] - '0');
    }
    if (len <= call->max_bytes)
        return 0;
    set_abort(call, JN_HTTP_ETOOBIG, "response body of %llu bytes over %zu bytes", len,
              call->max_bytes);
    return -1;
}

static int header_push(jn_http_call_t *call, char *name, char *value)
{
    jn_http_response_t *resp = call->resp;

    if (resp->nheaders == call->headers_cap) {
        size_t cap = call->headers_cap ? call->headers_cap * 2 : 16;
        jn_http_header_t *h = realloc(resp->headers, cap * sizeof *h);
        if (!h)
            return -1;
        resp->headers = h;
        call->headers_cap = cap;
    }
    resp->headers[resp->nheaders].name = name;
    resp->headers[resp->nheaders].value = value;
    resp->nheaders++;
    return 0;
}

static int header_add(jn_http_call_t *call, const char *line, size_t n)
{
    const char *colon = memchr(line, ':', n);
    const char *v;
    size_t vn;
    char *name, *value;

    if (!colon || colon == line)
        return 0; /* blank line ending the header block, or junk curl let through */
    v = colon + 1;
    vn = n - (size_t)(v - line);
    trim(&v, &vn);
    name = strndup(line, (size_t)(colon - line));
    value = strndup(v, vn);
    if (!name || !value || header_push(call, name, value) != 0) {
        free(name);
        free(value);
        set_abort(call, JN_HTTP_EINTERNAL, "out of memory");
        return -1;
    }
    for (char *p = name; *p; p++)
        *p = (char)((*p >= 'A' && *p <= 'Z') ? *p - 'A' + 'a' : *p);
    if (strcmp(name, "content-length") == 0)
        return check_content_length(call, value, vn);
    return 0;
}

/* Obsolete line folding: the line continues the previous header's value. */
static int header_fold(jn_http_call_t *call, const char *line, size_t n)
{
    jn_http_response_t *resp = call->resp;
    char *old, *joined;

    trim(&line, &n);
    if (resp->nheaders == 0 || n == 0)
        return 0;
    old = resp->headers[resp->nheaders - 1].value;
    if (asprintf(&joined, "%s %.*s", old, (int)n, line) < 0) {
        set_abort(call, JN_HTTP_EINTERNAL, "out of memory");
        return -1;
    }
    free(old);
    resp->headers[resp->nheaders - 1].value = joined;
    return 0;
}

static size_t on_header(char *line, size_t size, size_t nitems, void *ud)
{
    jn_http_call_t *call = ud;
    size_t n = size * nitems;
    int rc;

    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        /* A new response (interim 1xx or final): keep only the last one's headers. */
        response_clear(call->resp);
        call->hop_status = parse_status(line, n);
        return n;
    }
    if (n > 0 && (line[0] == ' ' || line[0] == '\t'))
        rc = header_fold(call, line, n);
    else
        rc = header_add(call, line, n);
    return rc == 0 ? n : 0;
}

/* ---- address policy ---- */

static curl_socket_t on_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    jn_http_call_t *call = ud;
    curl_socket_t fd;

    if (purpose != CURLSOCKTYPE_IPCXN || call->cancelled)
        return CURL_SOCKET_BAD;
    if (call->addr_policy && call->addr_policy(call->policy_ud, call->hop.host, &a->addr) != 0) {
        if (!call->denied_addr[0])
            jn_net_addr_str(&a->addr, call->denied_addr, sizeof call->denied_addr);
        return CURL_SOCKET_BAD;
    }
    if (call->cancelled || call->client->destroy_pending)
        return CURL_SOCKET_BAD;
    fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd < 0)
        return CURL_SOCKET_BAD;
    call->opened_socket = true;
    return fd;
}

static int sockaddr_from_ip(const char *ip, int port, struct sockaddr_storage *ss)
{
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof *ss);
    if (inet_pton(AF_INET, ip, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        return 0;
    }
    if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        return 0;
    }
    return -1;
}

/* A reused connection skips the open-socket callback, and it may have been
 * opened by a call with a laxer policy: check its peer address here too. */
static int on_prereq(void *ud, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    jn_http_call_t *call = ud;
    struct sockaddr_storage ss;

    (void)local_ip;
    (void)local_port;
    call->connected = true;
    if (!call->addr_policy || call->opened_socket)
        return CURL_PREREQFUNC_OK;
    if (sockaddr_from_ip(primary_ip, primary_port, &ss) == 0 &&
        call->addr_policy(call->policy_ud, call->hop.host, (struct sockaddr *)&ss) == 0 &&
        !call->cancelled)
        return CURL_PREREQFUNC_OK;
    set_abort(call, JN_HTTP_EDENIED, "address %s of %s refused by policy", primary_ip,
              call->hop.host);
    return CURL_PREREQFUNC_ABORT;
}

/* ---- per-hop setup ---- */

static bool header_dropped(const jn_http_call_t *call, const char *h)
{
    static const char *const credentials[] = {"authorization", "proxy-authorization", "cookie"};
    static const char *const body_headers[] = {"content-type",     "content-length",
                                               "content-encoding", "content-language",
                                               "content-location", "transfer-encoding"};

    for (size_t i = 0; call->auth_dropped && i < sizeof credentials / sizeof *credentials; i++) {
        if (header_is(h, credentials[i]))
            return true;
    }
    for (size_t i = 0; call->body_dropped && i < sizeof body_headers / sizeof *body_headers; i++) {
        if (header_is(h, body_headers[i]))
            return true;
    }
    return false;
}

static bool sends_body(const jn_http_call_t *call)
{
    return call->has_body || strcmp(call->method, "POST") == 0 ||
           strcmp(call->method, "PUT") == 0 || strcmp(call->method, "PATCH") == 0;
}

static int build_headers(jn_http_call_t *call)
{
    bool has_type = false;

    slist_free(call->slist);
    call->slist = NULL;
    for (size_t i = 0; i < call->nheaders; i++) {
        if (header_dropped(call, call->headers[i]))
            continue;
        has_type = has_type || header_is(call->headers[i], "content-type");
        if (slist_add(&call->slist, call->headers[i]) != 0)
            return -1;
    }
    for (size_t i = 0; !call->auth_dropped && i < call->nauth; i++) {
        if (slist_add(&call->slist, call->auth[i]) != 0)
            return -1;
    }
    /* Stop curl from labelling every body application/x-www-form-urlencoded. */
    if (sends_body(call) && !has_type && slist_add(&call->slist, "Content-Type:") != 0)
        return -1;
    return 0;
}

static int set_method(jn_http_call_t *call)
{
    CURL *e = call->easy;
    int bad = 0;

    if (strcmp(call->method, "HEAD") == 0)
        return curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    if (!sends_body(call) && strcmp(call->method, "GET") == 0)
        return curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    if (sends_body(call)) {
        bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body_len);
        bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body ? call->body : "");
    }
    if (strcmp(call->method, "POST") != 0)
        bad |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, call->method);
    return bad;
}

static int configure(jn_http_call_t *call, long left_ms)
{
    const jn_http_client_t *c = call->client;
    CURL *e = call->easy;
    long connect_ms = call->connect_limited ? call->connect_timeout_ms : left_ms;
    int bad = 0;

    bad |= curl_easy_setopt(e, CURLOPT_URL, call->url);
    bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, call);
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf);
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    bad |= curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    /* A proxy would resolve and connect on our behalf, out of the address policy's sight. */
    bad |= curl_easy_setopt(e, CURLOPT_PROXY, "");
    bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->ca_file)
        bad |= curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, c->user_agent);
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, left_ms);
    bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->slist);
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
    bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, call);
    bad |= curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    bad |= curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, call);
    bad |= curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    bad |= curl_easy_setopt(e, CURLOPT_PREREQDATA, call);
    /* Removing a handle mid-resolve must not join the resolver thread on the loop. */
    bad |= curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
    return bad | set_method(call);
}

static void hop_reset(jn_http_call_t *call)
{
    call->connected = false;
    call->opened_socket = false;
    call->hop_status = 0;
    call->abort_err = JN_HTTP_OK;
    call->abort_detail[0] = '\0';
    call->denied_addr[0] = '\0';
    call->errbuf[0] = '\0';
    call->resp->status = 0;
    response_clear(call->resp);
}

/* Configures the easy handle for call->url with the time left and adds it to the multi. */
static jn_http_error_t hop_start(jn_http_call_t *call)
{
    long left = call->timeout_ms - elapsed_ms(call);

    hop_reset(call);
    if (url_origin(call->url, &call->hop) != 0)
        return JN_HTTP_EINVAL;
    if (left <= 0)
        return JN_HTTP_ETIMEDOUT;
    call->connect_limited = call->connect_timeout_ms < left;
    if (build_headers(call) != 0)
        return JN_HTTP_EINTERNAL;
    if (!call->easy && call->client->nidle_easy)
        call->easy = call->client->idle_easy[--call->client->nidle_easy];
    if (!call->easy && !(call->easy = curl_easy_init()))
        return JN_HTTP_EINTERNAL;
    curl_easy_reset(call->easy);
    if (configure(call, left) != 0)
        return JN_HTTP_EINTERNAL;
    if (curl_multi_add_handle(call->client->multi, call->easy) != CURLM_OK)
        return JN_HTTP_EINTERNAL;
    call->in_multi = true;
    call->client->active++;
    return JN_HTTP_OK;
}

static void multi_remove(jn_http_call_t *call)
{
    curl_multi_remove_handle(call->client->multi, call->easy);
    call->in_multi = false;
    call->client->active--;
}

/* ---- wait queue ---- */

static bool must_wait(const jn_http_client_t *c)
{
    return c->nwait || (c->max_active && c->active >= c->max_active);
}

static bool wait_before(const jn_http_call_t *a, const jn_http_call_t *b)
{
    return a->priority != b->priority ? a->priority < b->priority : a->wait_seq < b->wait_seq;
}

static void wait_set(jn_http_client_t *c, size_t i, jn_http_call_t *call)
{
    c->wait[i] = call;
    call->wait_index = i;
}

static void wait_sift_up(jn_http_client_t *c, size_t i)
{
    jn_http_call_t *call = c->wait[i];

    while (i > 0 && wait_before(call, c->wait[(i - 1) / 2])) {
        wait_set(c, i, c->wait[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    wait_set(c, i, call);
}

static void wait_sift_down(jn_http_client_t *c, size_t i)
{
    jn_http_call_t *call = c->wait[i];
    size_t child;

    while ((child = 2 * i + 1) < c->nwait) {
        if (child + 1 < c->nwait && wait_before(c->wait[child + 1], c->wait[child]))
            child++;
        if (!wait_before(c->wait[child], call))
            break;
        wait_set(c, i, c->wait[child]);
        i = child;
    }
    wait_set(c, i, call);
}

static int wait_push(jn_http_call_t *call)
{
    jn_http_client_t *c = call->client;
    jn_http_call_t **wait;

    if (c->nwait == c->wait_cap) {
        size_t cap = c->wait_cap ? 2 * c->wait_cap : 64;
        wait = realloc(c->wait, cap * sizeof *wait);
        if (!wait)
            return -1;
        c->wait = wait;
        c->wait_cap = cap;
    }
    call->waiting = true;
    call->wait_seq = c->wait_seq++;
    wait_set(c, c->nwait++, call);
    wait_sift_up(c, c->nwait - 1);
    return 0;
}

static void wait_unlink(jn_http_call_t *call)
{
    jn_http_client_t *c = call->client;
    size_t i = call->wait_index;

    if (!call->waiting)
        return;
    call->waiting = false;
    if (i != --c->nwait) { /* the last call fills the hole, then finds its place */
        jn_http_call_t *last = c->wait[c->nwait];

        wait_set(c, i, last);
        wait_sift_up(c, i);
        if (last->wait_index == i)
            wait_sift_down(c, i);
    }
}

/* ---- call lifecycle ---- */

/* Keeps a finished call's easy handle for a later call. curl_easy_reset
 * clears every option (and so every pointer into the finished call); what it
 * keeps (connections, DNS and TLS session caches) is not per job here: no
 * cookie engine, HSTS or alt-svc cache is ever enabled. */
static void easy_release(jn_http_client_t *c, CURL *e)
{
    if (c->closing || c->nidle_easy >= c->idle_easy_max) {
        curl_easy_cleanup(e);
        return;
    }
    curl_easy_reset(e);
    c->idle_easy[c->nidle_easy++] = e;
}

static void call_free(jn_http_call_t *call)
{
    wait_unlink(call);
    if (call->easy) {
        if (call->in_multi)
            multi_remove(call);
        easy_release(call->client, call->easy);
    }
    slist_free(call->slist);
    strv_free(call->headers, call->nheaders, false);
    strv_free(call->auth, call->nauth, true);
    free(call->body);
    free(call->url);
    jn_http_response_free(call->resp);
    free(call);
}

static void call_link(jn_http_call_t *call)
{
    jn_http_client_t *c = call->client;

    call->next = c->calls;
    if (c->calls)
        c->calls->prev = call;
    c->calls = call;
    c->in_flight++;
}

static void call_destroy(jn_http_call_t *call)
{
    jn_http_client_t *c = call->client;

    if (call->prev)
        call->prev->next = call->next;
    else
        c->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    if (!call->cancelled)
        c->in_flight--;
    call_free(call);
}

/* Hands the response to the caller; the call is gone before `done` runs. */
static void complete(jn_http_call_t *call)
{
    jn_http_response_t *resp = call->resp;
    jn_http_done_fn done = call->done;
    void *ud = call->ud;

    resp->total_ms = (double)(uv_hrtime() - call->start_ns) / 1e6;
    resp->effective_url = call->url;
    call->url = NULL;
    call->resp = NULL;
    call_destroy(call);
    done(resp, ud);
}

static void fail(jn_http_call_t *call, jn_http_error_t err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(jn_http_call_t *call, jn_http_error_t err, const char *fmt, ...)
{
    jn_http_response_t *resp = call->resp;
    char shown[URL_SHOWN_MAX + 1];
    int n;
    va_list ap;

    jn_http_shown_url(call->url, shown, sizeof shown);
    n = snprintf(resp->error_msg, sizeof resp->error_msg, "%s %s: ", call->method, shown);
    if (n >= 0 && (size_t)n < sizeof resp->error_msg) {
        va_start(ap, fmt);
        vsnprintf(resp->error_msg + n, sizeof resp->error_msg - (size_t)n, fmt, ap);
        va_end(ap);
    }
    resp->error = err;
    response_clear(resp);
    free(resp->body);
    resp->body = NULL;
    complete(call);
}

static void succeed(jn_http_call_t *call)
{
    if (!call->resp->body && body_reserve(call, 1) != 0) {
        fail(call, JN_HTTP_EINTERNAL, "out of memory");
        return;
    }
    call->resp->body[call->resp->body_len] = '\0';
    complete(call);
}

static jn_http_error_t map_curl_error(CURLcode rc, const char *errbuf)
{
    switch (rc) {
    case CURLE_URL_MALFORMAT:
        return JN_HTTP_EINVAL;
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
        return JN_HTTP_ECONNECT;
    case CURLE_RECV_ERROR:
        /* curl reports a malformed chunked stream as a receive error. */
        return strstr(errbuf, "chunked") ? JN_HTTP_EPROTO : JN_HTTP_ECONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return JN_HTTP_ETIMEDOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_USE_SSL_FAILED:
        return JN_HTTP_ETLS;
    /* Unsupported protocol here means an HTTP/0.9-style reply: the scheme was checked. */
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_PARTIAL_FILE:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
        return JN_HTTP_EPROTO;
    case CURLE_FILESIZE_EXCEEDED:
        return JN_HTTP_ETOOBIG;
    default:
        return JN_HTTP_EINTERNAL;
    }
}

static void fail_curl(jn_http_call_t *call, CURLcode rc)
{
    if (call->abort_err != JN_HTTP_OK) {
        fail(call, call->abort_err, "%s", call->abort_detail);
    } else if (rc == CURLE_COULDNT_CONNECT && call->denied_addr[0]) {
        fail(call, JN_HTTP_EDENIED, "address %s of %s refused by policy", call->denied_addr,
             call->hop.host);
    } else if (rc == CURLE_OPERATION_TIMEDOUT && !call->connected && call->connect_limited) {
        fail(call, JN_HTTP_ETIMEDOUT, "connect timeout after %ld ms", call->connect_timeout_ms);
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        fail(call, JN_HTTP_ETIMEDOUT, "timeout after %ld ms", call->timeout_ms);
    } else {
        /* Failures after the request may have left: a retry could apply it twice. */
        call->resp->maybe_sent =
            rc == CURLE_SEND_ERROR || rc == CURLE_GOT_NOTHING || rc == CURLE_RECV_ERROR;
        fail(call, map_curl_error(rc, call->errbuf), "%s",
             call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc));
    }
}

/* ---- redirects ---- */

static bool is_redirect(long status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

static void hop_error(jn_http_call_t *call, jn_http_error_t err)
{
    if (err == JN_HTTP_ETIMEDOUT)
        fail(call, err, "timeout after %ld ms", call->timeout_ms);
    else
        fail(call, err, "cannot start the request");
}

/* Switches to the next hop (takes `next`) and restarts the transfer. */
static void hop_advance(jn_http_call_t *call, char *next, const origin_t *to, long status)
{
    bool post = strcmp(call->method, "POST") == 0;
    jn_http_error_t err;

    if ((status == 303 && strcmp(call->method, "HEAD") != 0) ||
        ((status == 301 || status == 302) && post)) {
        strcpy(call->method, "GET");
        call->has_body = false;
        call->body_dropped = true;
    }
    if (!origin_equal(&call->origin, to))
        call->auth_dropped = true; /* for good: a later hop back does not get them either */
    free(call->url);
    call->url = next;
    call->resp->redirects++;
    multi_remove(call); /* the call keeps its slot: the next hop starts at once */
    err = hop_start(call);
    if (err != JN_HTTP_OK)
        hop_error(call, err);
}

static bool redirect_refused(jn_http_call_t *call, const char *next)
{
    jn_http_client_t *c = call->client;
    int rc;

    if (!call->redirect_policy)
        return false;
    c->busy++;
    rc = call->redirect_policy(call->policy_ud, call->url, next);
    c->busy--;
    return rc != 0;
}

static void follow_redirect(jn_http_call_t *call, const char *location, long status)
{
    jn_http_client_t *c = call->client;
    char *next = NULL;
    char shown[URL_SHOWN_MAX + 1];
    origin_t to;
    const char *why = "refused: not an http(s) URL";

    if (call->resp->redirects >= call->max_redirects) {
        fail(call, JN_HTTP_EREDIRECTS, "more than %d redirects", call->max_redirects);
        return;
    }
    if (canonical_url(call->url, location, &next) != 0) {
        fail(call, JN_HTTP_EPROTO, "malformed Location in %ld redirect", status);
        return;
    }
    jn_http_shown_url(next, shown, sizeof shown);
    if (url_origin(next, &to) != 0)
        goto fail;
    why = "refused by policy";
    if (redirect_refused(call, next))
        goto fail;
    if (call->cancelled || c->destroy_pending) {
        free(next); /* settled once the policy callback's caller unwinds */
        return;
    }
    hop_advance(call, next, &to, status);
    return;
fail:
    free(next);
    fail(call, JN_HTTP_EDENIED, "redirect to %s %s", shown, why);
}

static void hop_done(jn_http_call_t *call, CURLcode rc)
{
    long status = 0;
    const char *location;

    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    call->resp->status = status;
    if (rc != CURLE_OK) {
        fail_curl(call, rc);
        return;
    }
    location = jn_http_response_header(call->resp, "location");
    if (!is_redirect(status) || !location || call->max_redirects == 0)
        succeed(call);
    else
        follow_redirect(call, location, status);
}

/* ---- libuv <-> curl glue ---- */

static void destroy_now(jn_http_client_t *c);

static void client_release(jn_http_client_t *c)
{
    if (--c->open_handles > 0 || !c->closing)
        return;
    free(c->ca_file);
    free(c->user_agent);
    free(c->idle_easy);
    free(c->wait);
    free(c);
}

static void on_sock_closed(uv_handle_t *h)
{
    sock_ctx_t *ctx = h->data;
    jn_http_client_t *c = ctx->client;

    free(ctx);
    client_release(c);
}

static void on_timer_closed(uv_handle_t *h)
{
    client_release(h->data);
}

static void sock_close(sock_ctx_t *ctx)
{
    jn_http_client_t *c = ctx->client;

    if (ctx->prev)
        ctx->prev->next = ctx->next;
    else
        c->socks = ctx->next;
    if (ctx->next)
        ctx->next->prev = ctx->prev;
    /* Stop now: curl closes the descriptor right after this, before the close callback. */
    uv_poll_stop(&ctx->poll);
    uv_close((uv_handle_t *)&ctx->poll, on_sock_closed);
}

static sock_ctx_t *sock_open(jn_http_client_t *c, curl_socket_t fd)
{
    sock_ctx_t *ctx = calloc(1, sizeof *ctx);

    if (!ctx)
        return NULL;
    if (uv_poll_init_socket(c->loop, &ctx->poll, fd) != 0) {
        free(ctx);
        return NULL;
    }
    ctx->poll.data = ctx;
    ctx->fd = fd;
    ctx->client = c;
    ctx->next = c->socks;
    if (c->socks)
        c->socks->prev = ctx;
    c->socks = ctx;
    c->open_handles++;
    return ctx;
}

static void reap_cancelled(jn_http_client_t *c)
{
    jn_http_call_t *next;

    c->cancel_pending = false;
    for (jn_http_call_t *call = c->calls; call; call = next) {
        next = call->next;
        if (call->cancelled)
            call_destroy(call);
    }
}

/* Starts waiting calls while the multi has room. A call that cannot start
 * (its time ran out while it waited) completes with the error at once; its
 * callback may send, cancel or destroy the client. */
static void pump(jn_http_client_t *c)
{
    jn_http_call_t *call;
    jn_http_error_t err;

    if (c->pumping || c->busy)
        return;
    c->pumping = true;
    while (!c->closing && !c->destroy_pending && c->nwait &&
           (!c->max_active || c->active < c->max_active)) {
        call = c->wait[0];
        wait_unlink(call);
        if (call->cancelled)
            continue; /* reaped with the other cancelled calls */
        err = hop_start(call);
        if (err != JN_HTTP_OK)
            hop_error(call, err);
    }
    c->pumping = false;
}

static void check_multi_info(jn_http_client_t *c)
{
    CURLMsg *msg;
    int left;

    while (!c->closing && !c->destroy_pending && (msg = curl_multi_info_read(c->multi, &left))) {
        char *priv = NULL;
        CURLcode rc = msg->data.result;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        jn_http_call_t *call = (jn_http_call_t *)priv;
        if (call && !call->cancelled)
            hop_done(call, rc);
    }
}

static void drive(jn_http_client_t *c, curl_socket_t fd, int flags)
{
    int running = 0;

    c->busy++;
    curl_multi_socket_action(c->multi, fd, flags, &running);
    c->busy--;
    check_multi_info(c);
    if (c->closing)
        return;
    if (c->destroy_pending) {
        destroy_now(c);
        return;
    }
    if (c->cancel_pending)
        reap_cancelled(c);
    pump(c);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    sock_ctx_t *ctx = h->data;
    int flags = status < 0 ? CURL_CSELECT_ERR : 0;

    if (events & (UV_READABLE | UV_DISCONNECT))
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    drive(ctx->client, ctx->fd, flags);
}

static void on_timer(uv_timer_t *t)
{
    drive(t->data, CURL_SOCKET_TIMEOUT, 0);
}

static int on_curl_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    jn_http_client_t *c = userp;
    sock_ctx_t *ctx = socketp;
    int events = 0;

    (void)e;
    if (what == CURL_POLL_REMOVE) {
        if (ctx)
            sock_close(ctx);
        return 0;
    }
    if (!ctx) {
        ctx = c->closing ? NULL : sock_open(c, fd);
        if (!ctx)
            return -1;
        curl_multi_assign(c->multi, fd, ctx);
    }
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    return uv_poll_start(&ctx->poll, events, on_poll) == 0 ? 0 : -1;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    jn_http_client_t *c = userp;

    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else if (!c->closing)
        uv_timer_start(&c->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- client ---- */

static int client_copy_opts(jn_http_client_t *c, const jn_http_client_opts_t *o)
{
    c->connect_timeout_ms =
        o->connect_timeout_ms > 0 ? o->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->max_response_bytes =
        o->max_response_bytes ? o->max_response_bytes : DEFAULT_MAX_RESPONSE_BYTES;
    c->max_redirects = o->max_redirects >= 0 ? o->max_redirects : DEFAULT_MAX_REDIRECTS;
    c->user_agent = strdup(o->user_agent ? o->user_agent : DEFAULT_USER_AGENT);
    c->ca_file = o->ca_file ? strdup(o->ca_file) : NULL;
    return c->user_agent && (c->ca_file || !o->ca_file) ? 0 : -1;
}

static int multi_setup(jn_http_client_t *c, long max_total_connections)
{
    int bad = 0;

    c->multi = curl_multi_init();
    if (!c->multi)
        return -1;
    bad |= curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    bad |= curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    bad |= curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    bad |= curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    if (max_total_connections > 0) {
        bad |= curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max_total_connections);
        c->max_active = (size_t)max_total_connections;
    }
    return bad ? -1 : 0;
}

jn_http_client_t *jn_http_client_create(uv_loop_t *loop, const jn_http_client_opts_t *opts)
{
    jn_http_client_opts_t defaults;
    jn_http_client_t *c = NULL;

    if (!loop || pthread_once(&curl_once, curl_init_once) != 0 || curl_init_rc != CURLE_OK)
        return NULL;
    if (!opts) {
        jn_http_client_opts_init(&defaults);
        opts = &defaults;
    }
    c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->loop = loop;
    if (client_copy_opts(c, opts) != 0 || multi_setup(c, opts->max_total_connections) != 0)
        goto fail;
    c->idle_easy_max = c->max_active ? c->max_active : 64;
    c->idle_easy = calloc(c->idle_easy_max, sizeof *c->idle_easy);
    if (!c->idle_easy)
        goto fail;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 1;
    return c;
fail:
    if (c->multi)
        curl_multi_cleanup(c->multi);
    free(c->ca_file);
    free(c->user_agent);
    free(c);
    return NULL;
}

static void destroy_now(jn_http_client_t *c)
{
    c->closing = true;
    while (c->calls)
        call_destroy(c->calls);
    while (c->nidle_easy)
        curl_easy_cleanup(c->idle_easy[--c->nidle_easy]);
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    while (c->socks)
        sock_close(c->socks);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

void jn_http_client_destroy(jn_http_client_t *client)
{
    if (!client || client->closing)
        return;
    if (client->busy)
        client->destroy_pending = true;
    else
        destroy_now(client);
}

size_t jn_http_client_in_flight(const jn_http_client_t *client)
{
    return client ? client->in_flight : 0;
}

static jn_http_error_t call_copy_request(jn_http_call_t *call, const jn_http_request_t *req)
{
    const jn_http_client_t *c = call->client;

    snprintf(call->method, sizeof call->method, "%s", req->method ? req->method : "GET");
    if (canonical_url(NULL, req->url, &call->url) != 0 || url_origin(call->url, &call->origin) != 0)
        return JN_HTTP_EINVAL;
    call->nheaders = req->nheaders;
    call->nauth = req->nauth_headers;
    if (strv_dup(req->headers, req->nheaders, &call->headers) != 0 ||
        strv_dup(req->auth_headers, req->nauth_headers, &call->auth) != 0)
        return JN_HTTP_EINTERNAL;
    call->has_body = req->body != NULL;
    call->body_len = req->body_len;
    call->body = call->has_body ? malloc(req->body_len ? req->body_len : 1) : NULL;
    if (call->has_body && !call->body)
        return JN_HTTP_EINTERNAL;
    if (call->has_body)
        memcpy(call->body, req->body, req->body_len);
    call->connect_timeout_ms =
        req->connect_timeout_ms > 0 ? req->connect_timeout_ms : c->connect_timeout_ms;
    call->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : c->timeout_ms;
    call->max_bytes = req->max_response_bytes ? req->max_response_bytes : c->max_response_bytes;
    call->max_redirects = req->max_redirects < 0 ? c->max_redirects : req->max_redirects;
    call->addr_policy = req->addr_policy;
    call->redirect_policy = req->redirect_policy;
    call->policy_ud = req->policy_ud;
    call->priority = req->priority;
    return JN_HTTP_OK;
}

int jn_http_client_send(jn_http_client_t *client, const jn_http_request_t *req,
                        jn_http_done_fn done, void *ud, jn_http_call_t **out_call)
{
    jn_http_call_t *call = NULL;
    jn_http_error_t err = JN_HTTP_EINVAL;

    if (out_call)
        *out_call = NULL;
    if (!client || client->closing || client->destroy_pending || !req || !done ||
        !request_valid(req))
        return JN_HTTP_EINVAL;
    call = calloc(1, sizeof *call);
    if (!call)
        return JN_HTTP_EINTERNAL;
    call->client = client;
    call->done = done;
    call->ud = ud;
    call->start_ns = uv_hrtime();
    call->resp = calloc(1, sizeof *call->resp);
    err = call->resp ? call_copy_request(call, req) : JN_HTTP_EINTERNAL;
    if (err != JN_HTTP_OK)
        goto fail;
    if (must_wait(client)) {
        if (wait_push(call) != 0) {
            err = JN_HTTP_EINTERNAL;
            goto fail;
        }
    } else if ((err = hop_start(call)) != JN_HTTP_OK) {
        goto fail;
    }
    call_link(call);
    if (out_call)
        *out_call = call;
    return JN_HTTP_OK;
fail:
    call_free(call);
    return err;
}

void jn_http_call_cancel(jn_http_call_t *call)
{
    jn_http_client_t *c;

    if (!call || call->cancelled)
        return;
    c = call->client;
    if (c->busy) {
        call->cancelled = true;
        c->in_flight--;
        c->cancel_pending = true;
        return;
    }
    call_destroy(call);
    pump(c); /* a slot may have come free */
}

const char *jn_http_response_header(const jn_http_response_t *resp, const char *name)
{
    for (size_t i = 0; resp && name && i < resp->nheaders; i++) {
        if (strcasecmp(resp->headers[i].name, name) == 0)
            return resp->headers[i].value;
    }
    return NULL;
}

void jn_http_response_free(jn_http_response_t *resp)
{
    if (!resp)
        return;
    response_clear(resp);
    free(resp->headers);
    free(resp->body);
    free(resp->effective_url);
    free(resp);
}
