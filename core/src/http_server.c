/* HTTP/1.1 server: connections, limits, timers, responses.
 *
 * Each connection reads into one buffer. A request head is found there
 * (http_server_parse.c), copied into the request object and parsed in place;
 * the body is moved into the request as it arrives. Requests of a connection
 * form a FIFO: a handler may answer out of order, but a response is written
 * only once every response before it has been, so pipelined responses keep
 * request order. Requests the server refuses itself (parse errors, limits,
 * 404/405/429) go through the same FIFO as synthetic responses.
 *
 * One timer per connection carries whichever deadline applies at the time
 * (head, body, idle keep-alive, write progress, lingering close); see
 * conn_arm_timer. Memory is only freed in libuv close and write callbacks, so
 * code running after a handler or a close call may still look at the
 * connection's flags: that is what `closing` is for.
 */
#include "http_server_internal.h"

#include "junction/crypto.h"
#include "junction/error.h"
#include "junction/json.h"
#include "junction/log.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <signal.h>
#include <sys/random.h>
#include <time.h>

#define DEFAULT_LISTEN "127.0.0.1:8080"
#define READ_MIN_ROOM 1024
#define READ_INITIAL_CAP 4096
#define BODY_INITIAL_CAP 65536
/* Bytes dropped while lingering before the connection is closed anyway. */
#define LINGER_MAX_BYTES (1u << 20)
#define RATE_PROBES 8
#define LOG_PATH_MAX 256

const uint64_t jn_http_latency_bounds_us[JN_HTTP_LATENCY_BUCKETS - 1] = {
    250,    500,    1000,   2500,    5000,    10000,   25000,    50000,
    100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

typedef struct conn conn_t;

typedef enum { R_BODY, R_HANDLER, R_READY } req_state_t;

struct jn_http_req {
    jn_http_server_t *srv; /* NULL once detached (client gone, server destroyed) */
    conn_t *conn;          /* NULL once detached */
    jn_http_req_t *next;   /* in the connection's FIFO */
    hs_route_t *route;     /* NULL when no route matched, and once detached */
    req_state_t state;
    bool head;  /* a HEAD request: the response has no body */
    bool close; /* the connection closes after this response */
    bool cancelled;
    bool expect_continue; /* 100 Continue not sent yet */
    bool synthetic;       /* no parsed head */
    hs_head_t h;
    size_t nparams;
    const char *param_name[JN_HTTP_MAX_PARAMS];
    char *param_value[JN_HTTP_MAX_PARAMS];
    /* Body */
    char *body;
    size_t body_len, body_cap;
    uint64_t content_left;
    uint64_t max_body;
    uint64_t body_deadline; /* loop ms */
    hs_chunked_t chunk;
    /* Bookkeeping */
    uint64_t start_ns; /* first byte of the request */
    char id[JN_HTTP_REQUEST_ID_MAX + 1];
    char client[INET6_ADDRSTRLEN];
    uint8_t client_addr[16];
    jn_http_cancel_fn cancel;
    void *cancel_ud;
    /* Response: the head without its final CRLF, then the body */
    int status;
    char *out;
    size_t out_head_len; /* without the final CRLF */
    size_t out_body_len;
    size_t out_total; /* allocated */
    size_t out_sent;  /* bytes handed to the socket, for bytes_sent */
    uv_write_t wreq;
    /* The head block and the decoded parameters live after the struct. */
    char *raw;
    size_t raw_len;
};

enum {
    P_HEAD,
    P_BODY,
};

typedef enum { T_NONE, T_HEAD, T_BODY, T_IDLE, T_WRITE, T_LINGER } timer_kind_t;

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t cont_wreq; /* 100 Continue */
    uv_shutdown_t shutdown_req;
    jn_http_server_t *srv;
    conn_t *prev, *next;
    char *buf; /* unconsumed input is buf[off..len) */
    size_t off, len, cap;
    hs_scan_t scan;
    int phase;
    jn_http_req_t *body_req; /* the request whose body is being read */
    jn_http_req_t *qhead, *qtail;
    size_t queued; /* requests in the FIFO */
    size_t writes; /* uv_write requests outstanding */
    bool head_started;
    uint64_t head_start;    /* loop ms of the current head's first byte */
    uint64_t head_start_ns; /* the same, for latency */
    uint64_t idle_since;
    uint64_t last_progress; /* loop ms the client last took output */
    size_t progress_mark;   /* output pending then */
    timer_kind_t timer_kind;
    uint64_t timer_deadline;
    bool reading;
    bool processing;
    bool closing;
    bool lingering;
    bool stop_parsing;      /* a response will close the connection */
    bool close_after_write; /* linger once the writes complete */
    bool cont_pending;
    bool paused;      /* parsing stopped at max_pipeline */
    bool buf_full;    /* reading stopped: no room for input */
    bool client_gone; /* EOF or reset from the client */
    uint64_t linger_deadline;
    size_t linger_bytes;
    uint8_t peer[16];
    char peer_str[INET6_ADDRSTRLEN];
    bool peer_trusted;
    int open_handles;
};

typedef struct {
    uint8_t key[16];
    double tokens;
    uint64_t last_ms;
    bool used;
} rate_entry_t;

struct jn_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_timer_t shutdown_timer;
    jn_http_server_opts_t o;
    char *listen;
    struct sockaddr_storage addr;
    hs_cidr_t *trusted;
    size_t ntrusted;
    hs_router_t router;
    conn_t *conns;
    size_t nconns;
    int open_handles;
    bool listener_open;
    bool listening;
    bool shutting_down;
    bool destroyed;
    bool done_called;
    jn_http_shutdown_fn shutdown_done;
    void *shutdown_ud;
    jn_http_server_stats_t stats;
    rate_entry_t *rate;
    size_t rate_mask;
    uint64_t seed[4];
    uint64_t id_counter;
    time_t date_sec;
    char date[32];
    int port;
    char discard[4096]; /* input of lingering connections */
    char reject_resp[320];
    size_t reject_len;
};

static void conn_process(conn_t *c);
static void conn_flush(conn_t *c);
static void conn_close(conn_t *c);
static void conn_after_io(conn_t *c);
static void req_free(jn_http_req_t *req);

/* ---- Options ---- */

void jn_http_server_opts_init(jn_http_server_opts_t *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->listen = DEFAULT_LISTEN;
    opts->backlog = 511;
    opts->max_connections = 1024;
    opts->max_header_bytes = 16384;
    opts->max_headers = 100;
    opts->max_body_bytes = 1u << 20;
    opts->max_pipeline = 16;
    opts->max_output_bytes = 1u << 20;
    opts->header_timeout_ms = 10000;
    opts->body_timeout_ms = 30000;
    opts->keepalive_timeout_ms = 15000;
    opts->write_timeout_ms = 30000;
    opts->linger_timeout_ms = 2000;
    opts->rate_per_s = 100;
    opts->rate_burst = 200;
    opts->rate_table_size = 65536;
    opts->access_log = 1;
}

/* The configuration keys of the server and the option each sets. */
typedef enum { K_SIZE, K_U64, K_DOUBLE } key_kind_t;

static const struct {
    const char *key;
    size_t offset;
    key_kind_t kind;
} config_keys[] = {
    {"http_server_max_connections", offsetof(jn_http_server_opts_t, max_connections), K_SIZE},
    {"http_server_max_header_bytes", offsetof(jn_http_server_opts_t, max_header_bytes), K_SIZE},
    {"http_server_max_headers", offsetof(jn_http_server_opts_t, max_headers), K_SIZE},
    {"http_server_max_body_bytes", offsetof(jn_http_server_opts_t, max_body_bytes), K_SIZE},
    {"http_server_max_pipeline", offsetof(jn_http_server_opts_t, max_pipeline), K_SIZE},
    {"http_server_max_output_bytes", offsetof(jn_http_server_opts_t, max_output_bytes), K_SIZE},
    {"http_server_header_timeout_ms", offsetof(jn_http_server_opts_t, header_timeout_ms), K_U64},
    {"http_server_body_timeout_ms", offsetof(jn_http_server_opts_t, body_timeout_ms), K_U64},
    {"http_server_keepalive_timeout_ms", offsetof(jn_http_server_opts_t, keepalive_timeout_ms),
     K_U64},
    {"http_server_write_timeout_ms", offsetof(jn_http_server_opts_t, write_timeout_ms), K_U64},
    {"http_server_rate_per_s", offsetof(jn_http_server_opts_t, rate_per_s), K_DOUBLE},
    {"http_server_rate_burst", offsetof(jn_http_server_opts_t, rate_burst), K_DOUBLE},
};

static bool config_has(const char *key)
{
    const char *k;

    for (size_t i = 0; (k = jn_config_key_at(i)) != NULL; i++) {
        if (strcmp(k, key) == 0)
            return true;
    }
    return false;
}

/* Keys the configuration schema does not (yet) have keep their defaults, so
 * that the server and the schema can change separately. */
int jn_http_server_opts_from_config(jn_http_server_opts_t *opts, const jn_config_t *cfg, char *err,
                                    size_t errlen)
{
    char *base = (char *)opts;

    if (!opts || !cfg)
        return jn_errorf(err, errlen, "HTTP server options: no options or configuration");
    if (config_has("listen"))
        opts->listen = jn_config_str(cfg, "listen");
    for (size_t i = 0; i < sizeof config_keys / sizeof config_keys[0]; i++) {
        long long v;

        if (!config_has(config_keys[i].key))
            continue;
        v = jn_config_int(cfg, config_keys[i].key);
        if (v < 0)
            return jn_errorf(err, errlen, "'%s' must not be negative", config_keys[i].key);
        switch (config_keys[i].kind) {
        case K_SIZE:
            *(size_t *)(base + config_keys[i].offset) = (size_t)v;
            break;
        case K_U64:
            *(uint64_t *)(base + config_keys[i].offset) = (uint64_t)v;
            break;
        case K_DOUBLE:
            *(double *)(base + config_keys[i].offset) = (double)v;
            break;
        }
    }
    if (config_has("http_server_trusted_proxies")) {
        size_t n = 0;

        opts->trusted_proxies = jn_config_list(cfg, "http_server_trusted_proxies", &n);
        opts->ntrusted_proxies = n;
    }
    return 0;
}

static int check_range(const char *name, uint64_t v, uint64_t lo, uint64_t hi, char *err,
                       size_t errlen)
{
    if (v < lo || v > hi)
        return jn_errorf(err, errlen,
                         "HTTP server option %s must be between %llu and %llu, got %llu", name,
                         (unsigned long long)lo, (unsigned long long)hi, (unsigned long long)v);
    return 0;
}

static int opts_validate(const jn_http_server_opts_t *o, char *err, size_t errlen)
{
    if (check_range("max_connections", o->max_connections, 1, 1000000, err, errlen) ||
        check_range("max_header_bytes", o->max_header_bytes, 256, 1u << 20, err, errlen) ||
        check_range("max_headers", o->max_headers, 1, 10000, err, errlen) ||
        check_range("max_body_bytes", o->max_body_bytes, 0, (uint64_t)1 << 32, err, errlen) ||
        check_range("max_pipeline", o->max_pipeline, 1, 1024, err, errlen) ||
        check_range("max_output_bytes", o->max_output_bytes, 1024, (uint64_t)1 << 32, err,
                    errlen) ||
        check_range("header_timeout_ms", o->header_timeout_ms, 1, 3600000, err, errlen) ||
        check_range("body_timeout_ms", o->body_timeout_ms, 1, 86400000, err, errlen) ||
        check_range("keepalive_timeout_ms", o->keepalive_timeout_ms, 1, 3600000, err, errlen) ||
        check_range("write_timeout_ms", o->write_timeout_ms, 1, 3600000, err, errlen) ||
        check_range("linger_timeout_ms", o->linger_timeout_ms, 1, 60000, err, errlen) ||
        check_range("backlog", (uint64_t)(o->backlog < 0 ? 0 : o->backlog), 1, 65535, err,
                    errlen) ||
        check_range("rate_table_size", o->rate_table_size, 16, 1u << 24, err, errlen))
        return -1;
    if (!(o->rate_per_s >= 0 && o->rate_per_s <= 1e9))
        return jn_errorf(err, errlen, "HTTP server option rate_per_s must be between 0 and 1e9");
    if (o->rate_per_s > 0 && !(o->rate_burst >= 1 && o->rate_burst <= 1e9))
        return jn_errorf(err, errlen,
                         "HTTP server option rate_burst must be between 1 and 1e9 when "
                         "rate_per_s is set");
    return 0;
}

/* ---- Small helpers ---- */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static void wipe_free(void *p, size_t len)
{
    if (p) {
        explicit_bzero(p, len);
        free(p);
    }
}

static const struct {
    int status;
    const char *reason;
} reasons[] = {
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {415, "Unsupported Media Type"},
    {417, "Expectation Failed"},
    {422, "Unprocessable Content"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

static const char *reason_phrase(int status)
{
    /* The reason phrase is informative only (RFC 9112 4): any text will do
     * for the statuses not listed. */
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
        if (reasons[i].status == status)
            return reasons[i].reason;
    }
    return status < 400 ? "OK" : status < 500 ? "Client Error" : "Server Error";
}

/* IMF-fixdate, built without the locale (strftime's %a and %b follow it). */
static const char *srv_date(jn_http_server_t *srv)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;

    if (now != srv->date_sec && gmtime_r(&now, &tm)) {
        srv->date_sec = now;
        snprintf(srv->date, sizeof srv->date, "%s, %02d %s %04d %02d:%02d:%02d GMT",
                 days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
    }
    return srv->date;
}

static void gen_request_id(jn_http_server_t *srv, char *out)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t n = ++srv->id_counter;
    uint64_t v[2] = {splitmix64(srv->seed[0] + n),
                     splitmix64(srv->seed[1] ^ (n * 0x9e3779b97f4a7c15ULL))};

    /* two 16-digit hex numbers; by hand, as snprintf cost more than the rest
     * of the request's bookkeeping */
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < 16; i++)
            out[16 * w + i] = hex[(v[w] >> (60 - 4 * i)) & 0xf];
    out[32] = '\0';
}

/* JSON string contents: quotes, backslashes and control bytes escaped;
 * ill-formed UTF-8 replaced by U+FFFD. Returns bytes written (< cap). */
static size_t json_escape(const char *s, char *out, size_t cap)
{
    size_t o = 0;

    while (*s && o + 8 < cap) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
            s++;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
            s++;
        } else if (c < 0x80) {
            out[o++] = (char)c;
            s++;
        } else {
            size_t n = jn_json_utf8_len(s, strlen(s));

            if (n == 0) {
                o += (size_t)snprintf(out + o, cap - o, "\\ufffd");
                s++;
            } else {
                memcpy(out + o, s, n);
                o += n;
                s += n;
            }
        }
    }
    out[o] = '\0';
    return o;
}

/* ---- Rate limit: a token bucket per client address ---- */

static uint64_t rate_hash(const jn_http_server_t *srv, const uint8_t key[16])
{
    uint64_t a, b;

    memcpy(&a, key, 8);
    memcpy(&b, key + 8, 8);
    return splitmix64((a ^ srv->seed[2]) + splitmix64(b ^ srv->seed[3]));
}

/* Takes a token for `addr`; false with the seconds to wait when empty.
 * IPv6 clients are keyed by their /64: one host usually has a whole /64. */
static bool rate_take(jn_http_server_t *srv, const uint8_t addr[16], uint64_t now_ms,
                      double *retry_s)
{
    static const uint8_t v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    double rate = srv->o.rate_per_s / 1000.0, burst = srv->o.rate_burst; /* tokens per ms */
    rate_entry_t *e = NULL, *victim = NULL;
    double victim_tokens = -1;
    uint8_t key[16];
    uint64_t h;

    memcpy(key, addr, 16);
    if (memcmp(key, v4_prefix, 12) != 0)
        memset(key + 8, 0, 8);
    h = rate_hash(srv, key);
    for (size_t i = 0; i < RATE_PROBES; i++) {
        rate_entry_t *x = &srv->rate[(h + i) & srv->rate_mask];
        double t;

        if (!x->used) {
            if (!victim || victim->used) {
                victim = x;
                victim_tokens = burst;
            }
            continue;
        }
        if (memcmp(x->key, key, 16) == 0) {
            e = x;
            break;
        }
        /* The most refilled entry is the cheapest to forget: a full bucket is
         * the same as none. */
        t = x->tokens + (double)(now_ms - x->last_ms) * rate;
        if (!victim || (victim->used && t > victim_tokens)) {
            victim = x;
            victim_tokens = t;
        }
    }
    if (!e) {
        e = victim;
        memcpy(e->key, key, 16);
        e->used = true;
        e->tokens = burst;
        e->last_ms = now_ms;
    }
    if (now_ms > e->last_ms) {
        e->tokens += (double)(now_ms - e->last_ms) * rate;
        if (e->tokens > burst)
            e->tokens = burst;
        e->last_ms = now_ms;
    }
    if (e->tokens >= 1) {
        e->tokens -= 1;
        return true;
    }
    *retry_s = ceil((1 - e->tokens) / (rate * 1000.0));
    return false;
}

/* ---- Client address: X-Forwarded-For from trusted proxies only ---- */

static bool addr_trusted(const jn_http_server_t *srv, const uint8_t addr[16])
{
    for (size_t i = 0; i < srv->ntrusted; i++) {
        if (hs_cidr_match(&srv->trusted[i], addr))
            return true;
    }
    return false;
}

/* Walks X-Forwarded-For from the right (the entry our proxy added) to the
 * left, over every XFF header line in reverse order, and stops at the first
 * address that is not a trusted proxy: entries left of it were written by the
 * client and prove nothing. A malformed entry stops the walk. */
static void resolve_client(jn_http_req_t *req, const conn_t *c)
{
    const jn_http_server_t *srv = c->srv;

    memcpy(req->client_addr, c->peer, 16);
    if (c->peer_trusted && !req->synthetic) {
        for (size_t i = req->h.nheaders; i-- > 0;) {
            const char *v = req->h.headers[i].value, *end;

            if (strcmp(req->h.headers[i].name, "x-forwarded-for") != 0)
                continue;
            end = v + strlen(v);
            while (end > v) {
                const char *start = end, *e = end;
                uint8_t a[16];

                while (start > v && start[-1] != ',')
                    start--;
                end = start > v ? start - 1 : v;
                while (start < e && (*start == ' ' || *start == '\t'))
                    start++;
                while (e > start && (e[-1] == ' ' || e[-1] == '\t'))
                    e--;
                if (hs_addr_parse(start, (size_t)(e - start), a) != 0)
                    goto done;
                memcpy(req->client_addr, a, 16);
                if (!addr_trusted(srv, a))
                    goto done;
            }
        }
    }
done:
    /* the connection's own address is formatted once, at its accept */
    if (c->peer_str[0] != '\0' && memcmp(req->client_addr, c->peer, 16) == 0)
        memcpy(req->client, c->peer_str, sizeof req->client);
    else
        hs_addr_format(req->client_addr, req->client, sizeof req->client);
}

/* ---- Stats and the access log ---- */

static void record(jn_http_server_t *srv, jn_http_req_t *req, int status, size_t body_bytes)
{
    jn_http_route_stats_t *rs = req->route ? &req->route->stats : &srv->router.unrouted;
    uint64_t ns = uv_hrtime() - req->start_ns, us = ns / 1000;
    const char *method = req->synthetic ? "-" : req->h.method;
    size_t b = 0;

    if (status >= 100 && status <= 599)
        rs->status[status - 100]++;
    while (b < JN_HTTP_LATENCY_BUCKETS - 1 && us > jn_http_latency_bounds_us[b])
        b++;
    rs->latency[b]++;
    rs->latency_sum_ns += ns;
    rs->count++;

    if (srv->o.observe) {
        jn_http_observation_t obs = {
            .method = method,
            .route = req->route ? req->route->pattern : NULL,
            .status = status,
            .latency_ns = ns,
            .request_body_bytes = req->body_len,
            .response_body_bytes = body_bytes,
        };

        srv->o.observe(srv->o.observe_ud, &obs);
    }
    if (srv->o.access_log && jn_log_get_level() <= JN_LOG_INFO) {
        char st[8], bytes[24], ms[32], path[LOG_PATH_MAX + 4];
        const char *p = req->synthetic ? "-" : req->h.path;
        size_t plen = strlen(p);
        jn_log_field_t f[8];

        /* The path only: the query string may hold a token or a code. */
        if (plen > LOG_PATH_MAX) {
            memcpy(path, p, LOG_PATH_MAX);
            memcpy(path + LOG_PATH_MAX, "...", 4);
            p = path;
        }
        snprintf(st, sizeof st, "%d", status);
        snprintf(bytes, sizeof bytes, "%zu", body_bytes);
        snprintf(ms, sizeof ms, "%.3f", (double)ns / 1e6);
        f[0] = (jn_log_field_t){"method", method, 0};
        f[1] = (jn_log_field_t){"path", p, 0};
        f[2] = (jn_log_field_t){"route", req->route ? req->route->pattern : NULL, 0};
        f[3] = (jn_log_field_t){"status", st, 1};
        f[4] = (jn_log_field_t){"bytes", bytes, 1};
        f[5] = (jn_log_field_t){"duration_ms", ms, 1};
        f[6] = (jn_log_field_t){"request_id", req->id, 0};
        f[7] = (jn_log_field_t){"client", req->client, 0};
        jn_log_fields(JN_LOG_INFO, "http request", f, 8);
    }
}

/* ---- Requests ---- */

static void req_free(jn_http_req_t *req)
{
    if (!req)
        return;
    /* Heads and bodies carry credentials (Authorization, credential documents). */
    wipe_free(req->body, req->body_cap);
    if (req->out)
        wipe_free(req->out, req->out_total);
    explicit_bzero(req, sizeof *req + req->raw_len);
    free(req);
}

static void queue_push(conn_t *c, jn_http_req_t *req)
{
    req->next = NULL;
    if (c->qtail)
        c->qtail->next = req;
    else
        c->qhead = req;
    c->qtail = req;
    c->queued++;
}

static jn_http_req_t *queue_pop(conn_t *c)
{
    jn_http_req_t *req = c->qhead;

    c->qhead = req->next;
    if (!c->qhead)
        c->qtail = NULL;
    req->next = NULL;
    c->queued--;
    return req;
}

/* A request with no parsed head, for errors found before the head is whole. */
static jn_http_req_t *req_new_synthetic(conn_t *c)
{
    jn_http_req_t *req = calloc(1, sizeof *req);

    if (!req)
        return NULL;
    req->srv = c->srv;
    req->conn = c;
    req->synthetic = true;
    req->close = true;
    req->start_ns = c->head_started ? c->head_start_ns : uv_hrtime();
    req->raw = "";
    gen_request_id(c->srv, req->id);
    resolve_client(req, c);
    queue_push(c, req);
    return req;
}

static const char *const reserved_headers[] = {
    "content-length", "transfer-encoding", "connection", "date", "x-request-id",
    "keep-alive",     "upgrade",           "trailer",    "te",   NULL,
};

static const char *check_fields(const jn_http_field_t *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *name = f[i].name, *v = f[i].value;

        if (!name || !*name || !v)
            return "a header has no name or no value";
        for (const char *s = name; *s; s++) {
            if (!hs_is_tchar((unsigned char)*s))
                return "a header name is not a token";
        }
        for (const char *s = v; *s; s++) {
            unsigned char ch = (unsigned char)*s;

            if (ch != '\t' && (ch < 0x20 || ch == 0x7f))
                return "a header value holds a control character";
        }
        for (size_t k = 0; reserved_headers[k]; k++) {
            if (strcasecmp(name, reserved_headers[k]) == 0)
                return "a header is one the server sets itself";
        }
    }
    return NULL;
}

static size_t put(char *o, const char *s, size_t n)
{
    memcpy(o, s, n);
    return n;
}

static size_t put_str(char *o, const char *s)
{
    return put(o, s, strlen(s));
}

/* Builds the response into req->out and marks the request ready. `extra`
 * are the server's own headers (Allow, Retry-After, Content-Type). */
static int req_build(jn_http_req_t *req, int status, const jn_http_field_t *extra, size_t nextra,
                     const jn_http_field_t *headers, size_t nheaders, const void *body,
                     size_t body_len)
{
    jn_http_server_t *srv = req->srv;
    bool no_body = status == 204 || status == 304;
    size_t size = 256 + body_len, o = 0;
    char *out;

    for (size_t i = 0; i < nextra; i++)
        size += strlen(extra[i].name) + strlen(extra[i].value) + 4;
    for (size_t i = 0; i < nheaders; i++)
        size += strlen(headers[i].name) + strlen(headers[i].value) + 4;
    out = malloc(size);
    if (!out)
        return -1;
    /* formatted by hand: two printf calls were a tenth of a small response's
     * cost on the event loop */
    o += put(out + o, "HTTP/1.1 ", 9);
    o += jn_decimal_u64((uint64_t)(status >= 100 && status <= 999 ? status : 500), out + o);
    out[o++] = ' ';
    o += put_str(out + o, reason_phrase(status));
    o += put(out + o, "\r\nDate: ", 8);
    o += put_str(out + o, srv_date(srv));
    if (!no_body) {
        o += put(out + o, "\r\nContent-Length: ", 18);
        o += jn_decimal_u64(body_len, out + o);
    }
    o += put(out + o, "\r\nX-Request-Id: ", 16);
    o += put_str(out + o, req->id);
    o += put(out + o, "\r\n", 2);
    for (int pass = 0; pass < 2; pass++) {
        const jn_http_field_t *f = pass ? headers : extra;
        size_t n = pass ? nheaders : nextra;

        for (size_t i = 0; i < n; i++) {
            o += put_str(out + o, f[i].name);
            o += put(out + o, ": ", 2);
            o += put_str(out + o, f[i].value);
            o += put(out + o, "\r\n", 2);
        }
    }
    req->out_head_len = o;
    req->out_body_len = 0;
    if (!no_body && !req->head && body_len) {
        memcpy(out + o, body, body_len);
        req->out_body_len = body_len;
    }
    req->out = out;
    req->out_total = size;
    req->status = status;
    req->state = R_READY;
    record(srv, req, status, no_body || req->head ? 0 : body_len);
    return 0;
}

static void error_body(char *buf, size_t cap, const char *code, const char *message)
{
    char esc[512];

    json_escape(message ? message : "", esc, sizeof esc);
    snprintf(buf, cap, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, esc);
}

static int req_error(jn_http_req_t *req, int status, const char *code, const char *message,
                     const jn_http_field_t *extra, size_t nextra)
{
    jn_http_field_t f[4];
    char body[768];
    size_t n = 0;

    f[n++] = (jn_http_field_t){"Content-Type", "application/json"};
    f[n++] = (jn_http_field_t){"Cache-Control", "no-store"};
    for (size_t i = 0; i < nextra && n < 4; i++)
        f[n++] = extra[i];
    error_body(body, sizeof body, code, message);
    return req_build(req, status, f, n, NULL, 0, body, strlen(body));
}

/* The server refuses the request itself. Protocol errors close the
 * connection: after one, the framing of what follows cannot be trusted. */
static void req_fail(jn_http_req_t *req, const hs_fail_t *fail, bool close)
{
    conn_t *c = req->conn;

    if (close) {
        req->close = true;
        c->stop_parsing = true;
    }
    if (fail->status != 404 && fail->status != 405 && fail->status != 408 && fail->status != 429)
        c->srv->stats.protocol_errors++;
    if (req_error(req, fail->status, fail->code, fail->message, NULL, 0) != 0)
        conn_close(c);
}

/* ---- Connections: reading ---- */

static void srv_unref(jn_http_server_t *srv);

static void on_conn_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    jn_http_server_t *srv = c->srv;

    if (--c->open_handles > 0)
        return;
    wipe_free(c->buf, c->cap);
    free(c);
    srv_unref(srv);
}

static void conn_update_reading(conn_t *c);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn_t *c = h->data;
    size_t cap_max = c->srv->o.max_header_bytes + READ_INITIAL_CAP;

    (void)suggested;
    if (c->lingering) {
        *buf = uv_buf_init(c->srv->discard, sizeof c->srv->discard);
        return;
    }
    if (!c->buf) {
        c->buf = malloc(READ_INITIAL_CAP);
        c->cap = c->buf ? READ_INITIAL_CAP : 0;
    }
    if (c->cap - c->len < READ_MIN_ROOM && c->off > 0) {
        size_t keep = c->len - c->off;

        memmove(c->buf, c->buf + c->off, keep);
        explicit_bzero(c->buf + keep, c->len - keep);
        c->len = keep;
        c->off = 0;
    }
    if (c->cap - c->len < READ_MIN_ROOM && c->cap < cap_max) {
        size_t cap = c->cap * 2 > cap_max ? cap_max : c->cap * 2;
        char *nb = malloc(cap);

        if (nb) {
            memcpy(nb, c->buf, c->len);
            wipe_free(c->buf, c->cap);
            c->buf = nb;
            c->cap = cap;
        }
    }
    *buf = uv_buf_init(c->buf ? c->buf + c->len : NULL, (unsigned)(c->cap - c->len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    jn_http_server_t *srv = c->srv;

    if (c->closing)
        return;
    if (nread > 0) {
        srv->stats.bytes_received += (uint64_t)nread;
        if (c->lingering) {
            /* Dropped unread, but it may be a secret all the same. */
            explicit_bzero(buf->base, (size_t)nread);
            c->linger_bytes += (size_t)nread;
            if (c->linger_bytes > LINGER_MAX_BYTES)
                conn_close(c);
            return;
        }
        c->len += (size_t)nread;
        if (c->phase == P_HEAD && !c->head_started) {
            c->head_started = true;
            c->head_start = uv_now(srv->loop);
            c->head_start_ns = uv_hrtime();
        }
        conn_process(c);
        return;
    }
    if (nread == UV_ENOBUFS) {
        /* The buffer is full of input we cannot parse yet (pipelined
         * requests waiting for room): stop reading until there is room. */
        uv_read_stop(s);
        c->reading = false;
        c->buf_full = true;
        return;
    }
    if (nread < 0) {
        /* EOF or a reset. A client that half-closes after its requests is
         * treated as gone, as most servers do: its requests are cancelled. */
        c->client_gone = !c->lingering;
        conn_close(c);
    }
}

static void conn_update_reading(conn_t *c)
{
    bool want;

    if (c->closing)
        return;
    /* Reading goes on while requests are in flight, even when nothing more
     * will be parsed: a disconnect must be seen to cancel them. Input that
     * cannot be parsed yet waits in the buffer, which is bounded; when it is
     * full, reading stops until parsing makes room. */
    want = c->lingering || !c->buf_full;
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = true;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* ---- Connections: timers ---- */

static void on_timer(uv_timer_t *t);

static void conn_arm_timer(conn_t *c)
{
    const jn_http_server_opts_t *o = &c->srv->o;
    uint64_t now = uv_now(c->srv->loop), deadline = 0;
    timer_kind_t kind = T_NONE;

    if (c->closing)
        return;
    if (c->lingering) {
        kind = T_LINGER;
        deadline = c->linger_deadline;
    } else if (c->writes > 0 && uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > 0) {
        kind = T_WRITE;
        deadline = c->last_progress + o->write_timeout_ms;
    } else if (c->phase == P_BODY) {
        kind = T_BODY;
        deadline = c->body_req->body_deadline;
    } else if (!c->stop_parsing && c->head_started && c->queued < o->max_pipeline) {
        kind = T_HEAD;
        deadline = c->head_start + o->header_timeout_ms;
    } else if (!c->qhead && c->writes == 0 && !c->stop_parsing) {
        if (c->timer_kind != T_IDLE)
            c->idle_since = now;
        kind = T_IDLE;
        deadline = c->idle_since + o->keepalive_timeout_ms;
    }
    if (kind == T_NONE) {
        if (c->timer_kind != T_NONE)
            uv_timer_stop(&c->timer);
    } else if (kind != c->timer_kind || deadline != c->timer_deadline) {
        uv_timer_start(&c->timer, on_timer, deadline > now ? deadline - now : 0, 0);
    }
    c->timer_kind = kind;
    c->timer_deadline = deadline;
}

static void on_timer(uv_timer_t *t)
{
    conn_t *c = t->data;
    jn_http_server_t *srv = c->srv;
    static const hs_fail_t head_timeout = {408, "request_timeout",
                                           "the request head was not received in time"};
    static const hs_fail_t body_timeout = {408, "request_timeout",
                                           "the request body was not received in time"};
    jn_http_req_t *req;

    if (c->closing)
        return;
    switch (c->timer_kind) {
    case T_LINGER:
        conn_close(c);
        return;
    case T_WRITE: {
        size_t pending = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);

        /* Part of a large response was taken since: that is progress. */
        if (pending < c->progress_mark) {
            c->progress_mark = pending;
            c->last_progress = uv_now(srv->loop);
            c->timer_kind = T_NONE;
            conn_arm_timer(c);
            return;
        }
        srv->stats.write_timeouts++;
        conn_close(c);
        return;
    }
    case T_IDLE:
        srv->stats.idle_timeouts++;
        conn_close(c);
        return;
    case T_BODY:
        srv->stats.body_timeouts++;
        req = c->body_req;
        c->body_req = NULL;
        c->phase = P_HEAD;
        req_fail(req, &body_timeout, true);
        break;
    case T_HEAD:
        srv->stats.header_timeouts++;
        /* A connection that sent nothing is closed quietly; one that sent
         * part of a head (slowloris) is told why. */
        if (c->off == c->len) {
            conn_close(c);
            return;
        }
        req = req_new_synthetic(c);
        if (!req) {
            conn_close(c);
            return;
        }
        req_fail(req, &head_timeout, true);
        break;
    default:
        return;
    }
    c->timer_kind = T_NONE;
    conn_after_io(c);
}

/* ---- Connections: closing ---- */

static void on_shutdown(uv_shutdown_t *sreq, int status)
{
    conn_t *c = sreq->data;

    if (status < 0 && !c->closing)
        conn_close(c);
}

/* After a final response: send FIN and keep reading (dropping the input)
 * for a while, so that a client still sending a body it was refused gets our
 * response rather than a reset. */
static void conn_linger(conn_t *c)
{
    if (c->closing || c->lingering)
        return;
    c->lingering = true;
    c->linger_deadline = uv_now(c->srv->loop) + c->srv->o.linger_timeout_ms;
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c);
        return;
    }
    conn_update_reading(c);
    conn_arm_timer(c);
}

/* Detaches the requests held by handlers (they are told through their cancel
 * callback once the connection's state is settled), frees the others, and
 * closes the handles. */
static void conn_close(conn_t *c)
{
    jn_http_server_t *srv = c->srv;
    jn_http_req_t *req, *next, *cancel_list = NULL, **cancel_tail = &cancel_list;

    if (c->closing)
        return;
    c->closing = true;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    srv->stats.connections_open--;

    for (req = c->qhead; req; req = next) {
        next = req->next;
        if (req->state == R_HANDLER) {
            req->cancelled = true;
            srv->stats.requests_in_flight--;
            if (c->client_gone)
                srv->stats.client_aborts++;
            record(srv, req, 499, 0);
            req->conn = NULL;
            req->srv = NULL;
            req->route = NULL;
            req->next = NULL;
            *cancel_tail = req;
            cancel_tail = &req->next;
        } else {
            req_free(req);
        }
    }
    c->qhead = c->qtail = NULL;
    c->queued = 0;
    c->body_req = NULL;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);

    for (req = cancel_list; req; req = next) {
        next = req->next;
        req->next = NULL;
        if (req->cancel)
            req->cancel(req, req->cancel_ud);
    }
}

/* ---- Connections: writing ---- */

static void on_write(uv_write_t *w, int status)
{
    jn_http_req_t *req = w->data;
    conn_t *c = req->conn;

    c->writes--;
    if (status == 0) {
        c->srv->stats.bytes_sent += req->out_sent;
        c->last_progress = uv_now(c->srv->loop);
        c->progress_mark = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    }
    req_free(req);
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    conn_after_io(c);
}

static void on_continue_written(uv_write_t *w, int status)
{
    conn_t *c = w->data;

    c->writes--;
    c->cont_pending = false;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    c->last_progress = uv_now(c->srv->loop);
    conn_after_io(c);
}

static void conn_send_continue(conn_t *c, jn_http_req_t *req)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uv_buf_t b = uv_buf_init((char *)cont, sizeof cont - 1);

    req->expect_continue = false;
    if (c->cont_pending)
        return;
    c->cont_wreq.data = c;
    if (c->writes == 0)
        c->last_progress = uv_now(c->srv->loop);
    if (uv_write(&c->cont_wreq, (uv_stream_t *)&c->tcp, &b, 1, on_continue_written) != 0) {
        conn_close(c);
        return;
    }
    c->cont_pending = true;
    c->writes++;
}

/* Nothing after a closing response is answered: the ready responses behind
 * it are dropped (those still in a handler are cancelled by the close). */
static void drop_after_close(conn_t *c)
{
    while (c->qhead) {
        jn_http_req_t *rest = c->qhead;

        if (rest->state == R_HANDLER)
            break;
        queue_pop(c);
        req_free(rest);
    }
}

/* Drops the first `done` bytes of bufs (a partial write): the buffers left,
 * moved to the front, and their count. */
static unsigned skip_written(uv_buf_t *bufs, unsigned n, size_t done)
{
    unsigned i = 0, k = 0;

    while (i < n && done >= bufs[i].len)
        done -= bufs[i++].len;
    for (; i < n; i++, k++) {
        bufs[k] = bufs[i];
        if (k == 0) {
            bufs[0].base += done;
            bufs[0].len -= (unsigned)done;
        }
    }
    return k;
}

/* Writes the ready responses at the head of the FIFO, in order. */
static void conn_flush(conn_t *c)
{
    static const char close_crlf[] = "Connection: close\r\n\r\n";
    jn_http_server_t *srv = c->srv;

    while (!c->closing && c->qhead && c->qhead->state == R_READY) {
        jn_http_req_t *req;
        uv_buf_t bufs[3];
        unsigned n = 0;
        bool close;

        /* A client that does not read its responses: what the kernel would
         * not take is already over the bound, do not queue more. */
        if (c->writes > 0 &&
            uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > srv->o.max_output_bytes) {
            srv->stats.output_overflows++;
            conn_close(c);
            return;
        }
        req = queue_pop(c);
        close = req->close || (c->stop_parsing && !c->qhead && c->phase == P_HEAD) ||
                (srv->shutting_down && !c->qhead && c->phase == P_HEAD);
        if (close) {
            c->stop_parsing = true;
            c->close_after_write = true;
        }
        bufs[n++] = uv_buf_init(req->out, (unsigned)req->out_head_len);
        if (close)
            bufs[n++] = uv_buf_init((char *)close_crlf, sizeof close_crlf - 1);
        else
            bufs[n++] = uv_buf_init((char *)"\r\n", 2);
        if (req->out_body_len)
            bufs[n++] = uv_buf_init(req->out + req->out_head_len, (unsigned)req->out_body_len);
        req->out_sent = req->out_head_len + bufs[1].len + req->out_body_len;
        req->wreq.data = req;
        if (c->writes == 0)
            c->last_progress = uv_now(srv->loop);
        /* Nothing queued before it: the kernel most often takes the whole
         * response at once. Written here, it needs no write request, whose
         * completion would make libuv change the socket's epoll registration
         * (a system call per response). What the kernel does not take is
         * queued as before. */
        if (c->writes == 0) {
            int w = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);

            if (w < 0 && w != UV_EAGAIN && w != UV_ENOSYS) {
                req_free(req);
                conn_close(c);
                return;
            }
            if (w > 0 && (size_t)w == req->out_sent) {
                srv->stats.bytes_sent += req->out_sent;
                c->progress_mark = 0;
                req_free(req);
                if (close) {
                    drop_after_close(c);
                    break;
                }
                continue;
            }
            if (w > 0)
                n = skip_written(bufs, n, (size_t)w);
        }
        if (uv_write(&req->wreq, (uv_stream_t *)&c->tcp, bufs, n, on_write) != 0) {
            req_free(req);
            conn_close(c);
            return;
        }
        c->writes++;
        c->progress_mark = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
        if (close) {
            drop_after_close(c);
            break;
        }
    }
    if (!c->closing && c->qhead && c->qhead->state == R_BODY && c->qhead->expect_continue)
        conn_send_continue(c, c->qhead);
}

/* Whatever follows a read, a write or a response: write what is ready, go
 * on parsing, adjust reading and the timer, and close when done. */
static void conn_after_io(conn_t *c)
{
    if (c->closing)
        return;
    conn_flush(c);
    if (c->closing)
        return;
    if (c->paused && !c->processing && c->queued < c->srv->o.max_pipeline) {
        c->paused = false;
        conn_process(c);
        return;
    }
    if (c->close_after_write && c->writes == 0 && !c->lingering) {
        /* Requests still held by handlers are cancelled by the close. */
        if (c->qhead)
            conn_close(c);
        else
            conn_linger(c);
        return;
    }
    if (c->stop_parsing && !c->qhead && c->writes == 0 && c->phase == P_HEAD && !c->lingering) {
        conn_linger(c);
        return;
    }
    conn_update_reading(c);
    conn_arm_timer(c);
}

/* ---- Requests: from head to handler ---- */

static void dispatch(conn_t *c, jn_http_req_t *req)
{
    req->state = R_HANDLER;
    c->srv->stats.requests_in_flight++;
    req->route->handler(req, req->route->ud);
    /* `req` may be gone now. */
}

static bool req_has_body(const jn_http_req_t *req)
{
    return req->h.chunked || req->h.content_length > 0;
}

static void start_body(conn_t *c, jn_http_req_t *req)
{
    const jn_http_server_opts_t *o = &c->srv->o;
    uint64_t timeout =
        req->route->opts.body_timeout_ms ? req->route->opts.body_timeout_ms : o->body_timeout_ms;
    size_t cap = BODY_INITIAL_CAP;

    if (!req->h.chunked && (uint64_t)req->h.content_length < cap)
        cap = (size_t)req->h.content_length;
    if (cap > req->max_body)
        cap = (size_t)req->max_body;
    req->body = malloc(cap + 1);
    if (!req->body) {
        conn_close(c);
        return;
    }
    req->body_cap = cap + 1;
    req->content_left = req->h.chunked ? 0 : (uint64_t)req->h.content_length;
    if (req->h.chunked) {
        hs_limits_t lim = {o->max_header_bytes, o->max_headers};

        hs_chunked_init(&req->chunk, req->max_body, &lim);
    }
    req->state = R_BODY;
    req->body_deadline = uv_now(c->srv->loop) + timeout;
    c->phase = P_BODY;
    c->body_req = req;
    /* 100 Continue only when the body will be read, and only when no body
     * byte came already (the client did not wait). */
    if (req->h.expect_continue && c->off == c->len) {
        req->expect_continue = true;
        if (c->qhead == req)
            conn_send_continue(c, req);
    }
}

/* Builds the request from the head at buf[off..off+head_len), and either
 * refuses it, starts reading its body, or dispatches it. */
static void accept_head(conn_t *c, size_t head_len)
{
    jn_http_server_t *srv = c->srv;
    const jn_http_server_opts_t *o = &srv->o;
    size_t maxh = c->scan.lines, size;
    hs_fail_t fail;
    hs_match_t m;
    jn_http_req_t *req;
    hs_header_t *hdrs;
    char allow[128];
    int status = 0;
    bool has_body;

    size = sizeof *req + maxh * sizeof(hs_header_t) + 2 * (head_len + 1);
    req = calloc(1, size);
    if (!req) {
        conn_close(c);
        return;
    }
    hdrs = (hs_header_t *)(req + 1);
    req->raw = (char *)(hdrs + maxh);
    req->raw_len = size - sizeof *req;
    memcpy(req->raw, c->buf + c->off, head_len);
    req->raw[head_len] = '\0';
    explicit_bzero(c->buf + c->off, head_len);
    c->off += head_len;
    memset(&c->scan, 0, sizeof c->scan);
    req->srv = srv;
    req->conn = c;
    req->start_ns = c->head_start_ns;
    c->head_started = c->off < c->len;
    if (c->head_started) {
        c->head_start = uv_now(srv->loop);
        c->head_start_ns = uv_hrtime();
    }
    queue_push(c, req);
    srv->stats.requests++;

    if (hs_parse_head(req->raw, head_len, hdrs, maxh, &req->h, &fail) != 0) {
        req->synthetic = true;
        gen_request_id(srv, req->id);
        resolve_client(req, c);
        req_fail(req, &fail, true);
        return;
    }
    if (req->h.request_id)
        snprintf(req->id, sizeof req->id, "%s", req->h.request_id);
    else
        gen_request_id(srv, req->id);
    resolve_client(req, c);
    req->head = strcmp(req->h.method, "HEAD") == 0;
    has_body = req_has_body(req);
    /* A refused request with a body closes the connection: its body is not
     * read, so the next request's start is unknown. */
    req->close = req->h.close || srv->shutting_down;

    req->route =
        hs_router_match(&srv->router, req->h.method, req->h.path, &m, &status, allow, sizeof allow);
    if (!req->route) {
        hs_fail_t nf = {404, "not_found", "no such resource"};
        jn_http_field_t allow_f = {"Allow", allow};

        if (has_body || req->close) {
            req->close = true;
            c->stop_parsing = true;
        }
        if (status == 405) {
            if (req_error(req, 405, "method_not_allowed", "the method is not allowed here",
                          &allow_f, 1) != 0)
                conn_close(c);
        } else {
            req_fail(req, &nf, false);
        }
        return;
    }
    req->nparams = m.n;
    {
        char *dst = req->raw + head_len + 1;

        for (size_t i = 0; i < m.n; i++) {
            req->param_name[i] = m.name[i];
            req->param_value[i] = dst;
            if (hs_percent_decode(m.raw[i], m.raw_len[i], dst) != 0) {
                hs_fail_t bp = {400, "bad_request", "malformed percent-encoding in the path"};

                req_fail(req, &bp, true);
                return;
            }
            dst += strlen(dst) + 1;
        }
    }
    if (o->rate_per_s > 0 && !req->route->opts.no_rate_limit) {
        double retry = 0;

        if (!rate_take(srv, req->client_addr, uv_now(srv->loop), &retry)) {
            char ra[32];
            jn_http_field_t f = {"Retry-After", ra};

            srv->stats.rate_limited++;
            snprintf(ra, sizeof ra, "%.0f", retry < 1 ? 1 : retry);
            if (has_body || req->close) {
                req->close = true;
                c->stop_parsing = true;
            }
            if (req_error(req, 429, "too_many_requests",
                          "too many requests from this client; retry later", &f, 1) != 0)
                conn_close(c);
            return;
        }
    }
    req->max_body =
        req->route->opts.max_body_bytes ? req->route->opts.max_body_bytes : o->max_body_bytes;
    if (!req->h.chunked && req->h.content_length > 0 &&
        (uint64_t)req->h.content_length > req->max_body) {
        /* Refused before a byte of the body is read (and before a 100 Continue). */
        hs_fail_t tl = {413, "payload_too_large",
                        "the request body exceeds the route's size limit"};

        req_fail(req, &tl, true);
        return;
    }
    if (has_body) {
        start_body(c, req);
        return;
    }
    if (req->close)
        c->stop_parsing = true;
    dispatch(c, req);
}

/* Moves body bytes from the buffer into the request; dispatches it when whole. */
static void feed_body(conn_t *c)
{
    jn_http_req_t *req = c->body_req;

    while (c->off < c->len) {
        const char *data = NULL;
        size_t consumed = 0, dlen = 0;
        hs_fail_t fail;
        int r;

        req->expect_continue = false;
        if (!req->h.chunked) {
            dlen = c->len - c->off;
            if (dlen > req->content_left)
                dlen = (size_t)req->content_left;
            data = c->buf + c->off;
            consumed = dlen;
            req->content_left -= dlen;
            r = req->content_left == 0 ? HS_CHUNK_DONE : HS_CHUNK_MORE;
        } else {
            r = hs_chunked_step(&req->chunk, c->buf + c->off, c->len - c->off, &consumed, &data,
                                &dlen, &fail);
        }
        if (dlen) {
            if (req->body_len + dlen + 1 > req->body_cap) {
                size_t cap = req->body_cap * 2;
                char *nb;

                while (cap < req->body_len + dlen + 1)
                    cap *= 2;
                if (cap > req->max_body + 1)
                    cap = (size_t)req->max_body + 1;
                nb = malloc(cap);
                if (!nb) {
                    conn_close(c);
                    return;
                }
                memcpy(nb, req->body, req->body_len);
                wipe_free(req->body, req->body_cap);
                req->body = nb;
                req->body_cap = cap;
            }
            memcpy(req->body + req->body_len, data, dlen);
            req->body_len += dlen;
        }
        explicit_bzero(c->buf + c->off, consumed);
        c->off += consumed;
        if (r == HS_CHUNK_FAIL) {
            c->body_req = NULL;
            c->phase = P_HEAD;
            req_fail(req, &fail, true);
            return;
        }
        if (r == HS_CHUNK_DONE) {
            req->body[req->body_len] = '\0';
            c->body_req = NULL;
            c->phase = P_HEAD;
            c->head_started = c->off < c->len;
            if (c->head_started) {
                c->head_start = uv_now(c->srv->loop);
                c->head_start_ns = uv_hrtime();
            }
            if (req->close)
                c->stop_parsing = true;
            dispatch(c, req);
            return;
        }
        if (r == HS_CHUNK_MORE && !req->h.chunked)
            return;
    }
}

static void conn_process(conn_t *c)
{
    jn_http_server_t *srv = c->srv;
    hs_limits_t lim = {srv->o.max_header_bytes, srv->o.max_headers};

    if (c->closing || c->lingering || c->processing)
        return;
    c->processing = true;
    while (!c->closing) {
        if (c->phase == P_HEAD) {
            size_t head_len = 0;
            hs_fail_t fail;
            int r;

            if (c->queued >= srv->o.max_pipeline) {
                c->paused = true;
                break;
            }
            if (c->stop_parsing || c->off == c->len)
                break;
            r = hs_scan_head(&c->scan, c->buf + c->off, c->len - c->off, &lim, &head_len, &fail);
            if (r == 0)
                break;
            if (r < 0) {
                jn_http_req_t *req = req_new_synthetic(c);

                srv->stats.requests++;
                if (!req) {
                    conn_close(c);
                    break;
                }
                req_fail(req, &fail, true);
                break;
            }
            accept_head(c, head_len);
        } else {
            size_t before = c->off;

            feed_body(c);
            if (c->phase == P_BODY && (c->off == c->len || c->off == before))
                break;
        }
    }
    if (!c->closing && c->off > 0) {
        c->buf_full = false;
        if (c->off == c->len) {
            c->off = c->len = 0;
            memset(&c->scan, 0, sizeof c->scan);
        }
    }
    c->processing = false;
    conn_after_io(c);
}

/* ---- Accepting ---- */

static void on_reject_closed(uv_handle_t *h)
{
    jn_http_server_t *srv = h->data;

    free(h);
    srv_unref(srv);
}

/* Over max_connections: one write attempt of a canned 503 and close. No
 * buffer, no timer, no parsing. */
static void reject(jn_http_server_t *srv)
{
    uv_tcp_t *t = malloc(sizeof *t);
    uv_buf_t b = uv_buf_init(srv->reject_resp, (unsigned)srv->reject_len);

    if (!t || uv_tcp_init(srv->loop, t) != 0) {
        free(t);
        return;
    }
    t->data = srv;
    srv->open_handles++;
    srv->stats.connections_refused++;
    if (uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)t) == 0)
        (void)uv_try_write((uv_stream_t *)t, &b, 1);
    uv_close((uv_handle_t *)t, on_reject_closed);
}

static void on_connection(uv_stream_t *server, int status)
{
    jn_http_server_t *srv = server->data;
    struct sockaddr_storage ss;
    int sslen = sizeof ss;
    conn_t *c;

    if (status < 0) {
        jn_log_warn("http server: accept failed: %s", uv_strerror(status));
        return;
    }
    if (srv->shutting_down || srv->destroyed)
        return;
    if (srv->nconns >= srv->o.max_connections) {
        reject(srv);
        return;
    }
    c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->srv = srv;
    if (uv_tcp_init(srv->loop, &c->tcp) != 0) {
        free(c);
        return;
    }
    c->tcp.data = c;
    c->timer.data = c;
    uv_timer_init(srv->loop, &c->timer);
    c->open_handles = 2;
    srv->open_handles++;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    srv->stats.connections_open++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    srv->stats.connections_accepted++;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen) == 0 &&
        hs_addr_bytes((struct sockaddr *)&ss, c->peer) == 0) {
        hs_addr_format(c->peer, c->peer_str, sizeof c->peer_str);
        c->peer_trusted = addr_trusted(srv, c->peer);
    }
    uv_tcp_nodelay(&c->tcp, 1);
    /* The first request's head deadline runs from the accept. */
    c->head_started = true;
    c->head_start = uv_now(srv->loop);
    c->head_start_ns = uv_hrtime();
    c->phase = P_HEAD;
    conn_update_reading(c);
    conn_arm_timer(c);
}

/* ---- Server lifecycle ---- */

jn_http_server_t *jn_http_server_create(uv_loop_t *loop, const jn_http_server_opts_t *opts,
                                        char *err, size_t errlen)
{
    jn_http_server_opts_t defaults;
    jn_http_server_t *srv;
    size_t table = 16;

    if (!opts) {
        jn_http_server_opts_init(&defaults);
        opts = &defaults;
    }
    if (opts_validate(opts, err, errlen) != 0)
        return NULL;
    srv = calloc(1, sizeof *srv);
    if (!srv) {
        jn_errorf(err, errlen, "out of memory");
        return NULL;
    }
    srv->loop = loop;
    srv->o = *opts;
    srv->port = -1;
    srv->listen = strdup(opts->listen ? opts->listen : DEFAULT_LISTEN);
    srv->o.listen = srv->listen;
    srv->o.trusted_proxies = NULL;
    hs_router_init(&srv->router);
    if (!srv->listen)
        goto oom;
    if (jn_http_listen_parse(srv->listen, &srv->addr, err, errlen) != 0)
        goto fail;
    if (opts->ntrusted_proxies) {
        srv->trusted = calloc(opts->ntrusted_proxies, sizeof *srv->trusted);
        if (!srv->trusted)
            goto oom;
        for (size_t i = 0; i < opts->ntrusted_proxies; i++) {
            if (hs_cidr_parse(opts->trusted_proxies[i], &srv->trusted[i], err, errlen) != 0)
                goto fail;
        }
        srv->ntrusted = opts->ntrusted_proxies;
    }
    if (opts->rate_per_s > 0) {
        while (table < opts->rate_table_size)
            table *= 2;
        srv->rate = calloc(table, sizeof *srv->rate);
        if (!srv->rate)
            goto oom;
        srv->rate_mask = table - 1;
    }
    if (getrandom(srv->seed, sizeof srv->seed, 0) != (ssize_t)sizeof srv->seed) {
        jn_errorf(err, errlen, "cannot read random bytes for request ids");
        goto fail;
    }
    if (uv_tcp_init(loop, &srv->listener) != 0 || uv_timer_init(loop, &srv->shutdown_timer) != 0) {
        jn_errorf(err, errlen, "cannot initialize the listener");
        goto fail;
    }
    srv->listener.data = srv;
    srv->shutdown_timer.data = srv;
    {
        static const char body[] = "{\"error\":{\"code\":\"too_many_connections\",\"message\":"
                                   "\"the server is at its connection limit\"}}";

        srv->reject_len = (size_t)snprintf(
            srv->reject_resp, sizeof srv->reject_resp,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            "Retry-After: 1\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
            sizeof body - 1, body);
    }
    srv->listener_open = true;
    srv->open_handles = 2;
    return srv;
oom:
    jn_errorf(err, errlen, "out of memory");
fail:
    free(srv->listen);
    free(srv->trusted);
    free(srv->rate);
    hs_router_free(&srv->router);
    free(srv);
    return NULL;
}

int jn_http_server_route(jn_http_server_t *srv, const char *method, const char *pattern,
                         jn_http_handler_fn handler, void *ud, const jn_http_route_opts_t *opts,
                         char *err, size_t errlen)
{
    if (opts && opts->max_body_bytes > ((uint64_t)1 << 32))
        return jn_errorf(err, errlen, "route %s %s: max_body_bytes is over 4 GiB",
                         method ? method : "?", pattern ? pattern : "?");
    return hs_router_add(&srv->router, method, pattern, handler, ud, opts, err, errlen);
}

int jn_http_server_listen(jn_http_server_t *srv, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    int len = sizeof ss, rc;

    struct sigaction sa;

    if (srv->listening || srv->shutting_down || srv->destroyed)
        return jn_errorf(err, errlen, "the HTTP server is already listening or stopped");
    /* A write to a connection the client reset raises SIGPIPE, whose default
     * action ends the process: a client must not be able to do that. */
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&srv->addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->listener, srv->o.backlog, on_connection);
    if (rc != 0)
        return jn_errorf(err, errlen, "cannot listen on %s: %s", srv->listen, uv_strerror(rc));
    if (uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len) == 0)
        srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    srv->listening = true;
    return 0;
}

int jn_http_server_port(const jn_http_server_t *srv)
{
    return srv->listening ? srv->port : -1;
}

static void srv_free(jn_http_server_t *srv)
{
    hs_router_free(&srv->router);
    free(srv->rate);
    free(srv->trusted);
    free(srv->listen);
    free(srv);
}

static void maybe_done(jn_http_server_t *srv)
{
    if (srv->shutting_down && !srv->done_called && srv->nconns == 0 && !srv->listener_open) {
        srv->done_called = true;
        if (!srv->destroyed)
            uv_timer_stop(&srv->shutdown_timer);
        if (srv->shutdown_done)
            srv->shutdown_done(srv, srv->shutdown_ud);
    }
}

static void srv_unref(jn_http_server_t *srv)
{
    srv->open_handles--;
    maybe_done(srv);
    if (srv->destroyed && srv->open_handles == 0)
        srv_free(srv);
}

static void on_listener_closed(uv_handle_t *h)
{
    jn_http_server_t *srv = h->data;

    srv_unref(srv);
}

static void on_shutdown_timer_closed(uv_handle_t *h)
{
    srv_unref(h->data);
}

static void close_listener(jn_http_server_t *srv)
{
    if (srv->listener_open) {
        srv->listener_open = false;
        uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
    }
}

static void close_all(jn_http_server_t *srv)
{
    while (srv->conns)
        conn_close(srv->conns);
}

static void on_shutdown_deadline(uv_timer_t *t)
{
    close_all(t->data);
}

void jn_http_server_shutdown(jn_http_server_t *srv, uint64_t timeout_ms, jn_http_shutdown_fn done,
                             void *ud)
{
    conn_t *c, *next;

    if (srv->shutting_down || srv->destroyed)
        return;
    srv->shutting_down = true;
    srv->shutdown_done = done;
    srv->shutdown_ud = ud;
    close_listener(srv);
    for (c = srv->conns; c; c = next) {
        next = c->next;
        if (c->lingering)
            continue;
        c->stop_parsing = true;
        if (!c->qhead && c->phase == P_HEAD && c->writes == 0)
            conn_close(c); /* idle, or a head still incomplete: nothing in flight */
        else
            conn_after_io(c);
    }
    uv_timer_start(&srv->shutdown_timer, on_shutdown_deadline, timeout_ms, 0);
}

void jn_http_server_destroy(jn_http_server_t *srv)
{
    if (!srv || srv->destroyed)
        return;
    srv->destroyed = true;
    /* A shutdown's `done` is not called once the server is destroyed. */
    srv->done_called = true;
    close_listener(srv);
    uv_timer_stop(&srv->shutdown_timer);
    uv_close((uv_handle_t *)&srv->shutdown_timer, on_shutdown_timer_closed);
    close_all(srv);
}

/* ---- Request accessors ---- */

const char *jn_http_req_method(const jn_http_req_t *req)
{
    return req->synthetic ? "" : req->h.method;
}

const char *jn_http_req_path(const jn_http_req_t *req)
{
    return req->synthetic ? "" : req->h.path;
}

const char *jn_http_req_query(const jn_http_req_t *req)
{
    return req->synthetic ? NULL : req->h.query;
}

const char *jn_http_req_route(const jn_http_req_t *req)
{
    return req->route ? req->route->pattern : NULL;
}

const char *jn_http_req_param(const jn_http_req_t *req, const char *name)
{
    for (size_t i = 0; i < req->nparams; i++) {
        if (strcmp(req->param_name[i], name) == 0)
            return req->param_value[i];
    }
    return NULL;
}

const char *jn_http_req_header(const jn_http_req_t *req, const char *name)
{
    for (size_t i = 0; i < req->h.nheaders; i++) {
        if (strcasecmp(req->h.headers[i].name, name) == 0)
            return req->h.headers[i].value;
    }
    return NULL;
}

size_t jn_http_req_header_count(const jn_http_req_t *req)
{
    return req->h.nheaders;
}

int jn_http_req_header_at(const jn_http_req_t *req, size_t i, const char **name, const char **value)
{
    if (i >= req->h.nheaders)
        return -1;
    *name = req->h.headers[i].name;
    *value = req->h.headers[i].value;
    return 0;
}

const char *jn_http_req_body(const jn_http_req_t *req, size_t *len)
{
    if (len)
        *len = req->body_len;
    return req->body ? req->body : "";
}

const char *jn_http_req_id(const jn_http_req_t *req)
{
    return req->id;
}

const char *jn_http_req_client(const jn_http_req_t *req)
{
    return req->client;
}

int jn_http_req_cancelled(const jn_http_req_t *req)
{
    return req->cancelled;
}

void jn_http_req_on_cancel(jn_http_req_t *req, jn_http_cancel_fn fn, void *ud)
{
    req->cancel = fn;
    req->cancel_ud = ud;
}

/* ---- Responding ---- */

int jn_http_respond(jn_http_req_t *req, int status, const jn_http_field_t *headers, size_t nheaders,
                    const void *body, size_t body_len)
{
    conn_t *c;
    const char *why = NULL;
    int rc = 0;

    if (!req)
        return -1;
    c = req->conn;
    if (!c) {
        req_free(req);
        return 1;
    }
    if (req->state != R_HANDLER) {
        jn_log_error("http server: a request was answered twice (request id %s)", req->id);
        return -1;
    }
    c->srv->stats.requests_in_flight--;
    if (status < 200 || status > 599)
        why = "the status is not between 200 and 599";
    else if ((status == 204 || status == 304) && body_len)
        why = "a 204 or 304 response has no body";
    else if (body_len && !body)
        why = "the body is NULL";
    else if (nheaders && !headers)
        why = "the headers are NULL";
    else
        why = check_fields(headers, nheaders);
    if (why) {
        jn_log_field_t f[3] = {{"route", req->route ? req->route->pattern : NULL, 0},
                               {"request_id", req->id, 0},
                               {"reason", why, 0}};

        jn_log_fields(JN_LOG_ERROR, "http handler gave an invalid response", f, 3);
        rc = -1;
        if (req_error(req, 500, "internal_error", "internal error", NULL, 0) != 0) {
            conn_close(c);
            return -1;
        }
    } else if (req_build(req, status, NULL, 0, headers, nheaders, body, body_len) != 0) {
        conn_close(c);
        return -1;
    }
    conn_after_io(c);
    return rc;
}

int jn_http_respond_json(jn_http_req_t *req, int status, const char *json, size_t len)
{
    jn_http_field_t f = {"Content-Type", "application/json"};

    return jn_http_respond(req, status, &f, 1, json, len);
}

int jn_http_respond_error(jn_http_req_t *req, int status, const char *code, const char *message)
{
    jn_http_field_t f[2] = {{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}};
    char body[768];

    for (const char *s = code; s && *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) {
            code = NULL;
            break;
        }
    }
    if (!code || !*code || strlen(code) > 64)
        code = "internal_error";
    error_body(body, sizeof body, code, message);
    return jn_http_respond(req, status, f, 2, body, strlen(body));
}

/* ---- Metrics ---- */

void jn_http_server_stats(const jn_http_server_t *srv, jn_http_server_stats_t *out)
{
    *out = srv->stats;
}

size_t jn_http_server_route_stats_count(const jn_http_server_t *srv)
{
    return srv->router.n + 1;
}

const jn_http_route_stats_t *jn_http_server_route_stats(const jn_http_server_t *srv, size_t i)
{
    if (i == 0)
        return &srv->router.unrouted;
    if (i > srv->router.n)
        return NULL;
    return &srv->router.routes[i - 1]->stats;
}
