/* HTTP/1.1 server on the caller's libuv loop.
 *
 * The server parses requests strictly (docs/adr/ADR-006-http-server-parser.md):
 * anything a proxy in front of it could read differently (Content-Length with
 * Transfer-Encoding, duplicate or malformed Content-Length, obs-fold, bare LF
 * or CR, invalid header names or values, an absolute-form target naming
 * another host) is answered with a 400 and the connection is closed.
 *
 * Connections are kept alive and pipelined: the requests of one connection
 * are dispatched as they arrive (up to max_pipeline at once) and their
 * responses are written strictly in request order, whatever order the
 * handlers answer in. HTTP/1.0 requests and requests with `Connection: close`
 * get one response and the connection is closed.
 *
 * Handlers are asynchronous. A handler receives a request and answers it now
 * or later with jn_http_respond (exactly once). The request stays valid until
 * then. If the client goes away first, the request's cancel callback (if set)
 * runs and jn_http_respond still has to be called: it then only releases the
 * request. Everything runs on the loop's thread.
 *
 * Errors the server answers itself are JSON with a stable code
 * (`{"error":{"code":"payload_too_large","message":"..."}}`); the codes are
 * listed in docs/operations.md. No response or log line quotes request bytes:
 * the access log has the method, the path without its query string, the
 * route, the status, sizes, the duration, the request id and the client
 * address, never a header value.
 */
#ifndef JUNCTION_HTTP_SERVER_H
#define JUNCTION_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "junction/config.h"

typedef struct jn_http_server jn_http_server_t;
/* One request, from its head to the call to jn_http_respond. */
typedef struct jn_http_req jn_http_req_t;

/* Most {name} parameters in one route pattern. */
#define JN_HTTP_MAX_PARAMS 8
/* A request id is 1 to 64 characters of [A-Za-z0-9._:-]. */
#define JN_HTTP_REQUEST_ID_MAX 64
/* Bounds of the latency histogram buckets in microseconds; the last bucket
 * (index JN_HTTP_LATENCY_BUCKETS - 1) counts everything above the last bound. */
#define JN_HTTP_LATENCY_BUCKETS 16
extern const uint64_t jn_http_latency_bounds_us[JN_HTTP_LATENCY_BUCKETS - 1];

typedef void (*jn_http_handler_fn)(jn_http_req_t *req, void *ud);
/* The client went away (or the server was destroyed) before the request was
 * answered. The request is still valid; jn_http_respond (which may be called
 * from here) releases it. */
typedef void (*jn_http_cancel_fn)(jn_http_req_t *req, void *ud);
typedef void (*jn_http_shutdown_fn)(jn_http_server_t *srv, void *ud);

/* One finished request, for the metrics module (opts.observe). Strings are
 * valid during the call only. */
typedef struct {
    const char *method;
    const char *route; /* the pattern, or NULL when no route matched */
    int status;        /* 499 when the client went away first */
    uint64_t latency_ns;
    uint64_t request_body_bytes;
    uint64_t response_body_bytes;
} jn_http_observation_t;
typedef void (*jn_http_observe_fn)(void *ud, const jn_http_observation_t *obs);

typedef struct {
    /* "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:8080", "[::]:8080"; port 0
     * takes an ephemeral port (jn_http_server_port). NULL: 127.0.0.1:8080. */
    const char *listen;
    int backlog;                   /* listen(2) backlog */
    size_t max_connections;        /* further connections are answered 503 and closed */
    size_t max_header_bytes;       /* request line + headers (and chunked trailers): 431 */
    size_t max_headers;            /* header lines: 431 */
    size_t max_body_bytes;         /* routes that declare no limit: 413 */
    size_t max_pipeline;           /* requests of one connection in flight at once */
    size_t max_output_bytes;       /* unsent response bytes queued behind the one being
                                      written: a client that does not read is disconnected */
    uint64_t header_timeout_ms;    /* first byte of a request to the end of its head: 408 */
    uint64_t body_timeout_ms;      /* end of the head to the end of the body: 408 */
    uint64_t keepalive_timeout_ms; /* idle between requests: closed */
    uint64_t write_timeout_ms;     /* output pending and none taken by the client: closed */
    uint64_t linger_timeout_ms;    /* reading (and dropping) after a final error response */
    /* Per client address (IPv6 by /64): a token bucket of `rate_burst`
     * requests refilled at `rate_per_s`; 0 disables the limit. 429 with
     * Retry-After when empty. */
    double rate_per_s;
    double rate_burst;
    size_t rate_table_size; /* clients tracked at once (the least loaded are evicted) */
    /* Proxies whose X-Forwarded-For is believed: CIDRs ("10.0.0.0/8",
     * "::1/128") or addresses. The client address is the rightmost entry of
     * X-Forwarded-For that is not itself a trusted proxy. Empty: the peer. */
    const char *const *trusted_proxies;
    size_t ntrusted_proxies;
    int access_log; /* one info line per request through the logger */
    jn_http_observe_fn observe;
    void *observe_ud;
} jn_http_server_opts_t;

/* The defaults (docs/operations.md): listen 127.0.0.1:8080, backlog 511,
 * 1024 connections, 16 KiB of head, 100 headers, 1 MiB bodies, pipeline 16,
 * 1 MiB queued output, timeouts 10 s head, 30 s body, 15 s keep-alive, 30 s
 * write, 2 s linger; 100 requests/s per client, burst 200, 65536 clients;
 * no trusted proxy; access log on. */
void jn_http_server_opts_init(jn_http_server_opts_t *opts);
/* Reads `listen` and the http_server_* keys of a configuration into `opts`
 * (after jn_http_server_opts_init): http_server_max_connections,
 * _max_header_bytes, _max_headers, _max_body_bytes, _max_pipeline,
 * _max_output_bytes, _header_timeout_ms, _body_timeout_ms,
 * _keepalive_timeout_ms, _write_timeout_ms, _rate_per_s, _rate_burst and
 * _trusted_proxies (a list). A key the configuration schema does not have
 * leaves its option as it is. Strings point into `cfg`: keep it alive until
 * jn_http_server_create returns. 0, or -1 with a message. */
int jn_http_server_opts_from_config(jn_http_server_opts_t *opts, const jn_config_t *cfg, char *err,
                                    size_t errlen);

/* Parses a listen address (see opts.listen) into `out`; 0, or -1 with a
 * message naming the address and the expected form. Host names are refused:
 * the address must be an IP literal. */
int jn_http_listen_parse(const char *listen, struct sockaddr_storage *out, char *err,
                         size_t errlen);

/* Validates the options and creates a server (not yet listening); NULL with a
 * message on a bad option. `opts` may be freed after return; NULL: defaults. */
jn_http_server_t *jn_http_server_create(uv_loop_t *loop, const jn_http_server_opts_t *opts,
                                        char *err, size_t errlen);
/* Binds and listens on opts.listen; 0 or -1 with a message. */
int jn_http_server_listen(jn_http_server_t *srv, char *err, size_t errlen);
/* The bound port (after listen), or -1. */
int jn_http_server_port(const jn_http_server_t *srv);

/* Options of one route; zero members take the server's values. */
typedef struct {
    size_t max_body_bytes;    /* 0: opts.max_body_bytes */
    uint64_t body_timeout_ms; /* 0: opts.body_timeout_ms */
    int no_rate_limit;        /* health checks and metrics scrapes */
} jn_http_route_opts_t;

/* Adds a route: `method` is a token ("GET", "POST", ...); `pattern` is an
 * absolute path whose segments are literal or a whole-segment parameter
 * `{name}` ([a-z_][a-z0-9_]*), e.g. "/v1/integrations/{id}". A path is
 * matched segment by segment, a literal segment winning over a parameter at
 * the first position where two patterns differ. A GET route also answers
 * HEAD (without the body) unless a HEAD route matches. A path that matches
 * some route but none with the method gets 405 with Allow; no route, 404.
 * Routes are added before listening. 0, or -1 with a message (bad method or
 * pattern, same method and pattern twice). `opts` may be NULL. */
int jn_http_server_route(jn_http_server_t *srv, const char *method, const char *pattern,
                         jn_http_handler_fn handler, void *ud, const jn_http_route_opts_t *opts,
                         char *err, size_t errlen);

/* Graceful shutdown: stops accepting, closes idle connections, lets the
 * requests in flight finish (their responses say `Connection: close`), and
 * after `timeout_ms` closes whatever is left (cancelling its requests). `done`
 * (may be NULL) runs once every connection is closed. Call at most once. */
void jn_http_server_shutdown(jn_http_server_t *srv, uint64_t timeout_ms, jn_http_shutdown_fn done,
                             void *ud);
/* Closes everything at once (requests held by handlers are cancelled and
 * detached: jn_http_respond then only frees them); a shutdown's `done` is no
 * longer called. Memory is released once the loop has run the close
 * callbacks. */
void jn_http_server_destroy(jn_http_server_t *srv);

/* ---- The request ---- */

/* The method as received ("GET", "HEAD" for a HEAD served by a GET route). */
const char *jn_http_req_method(const jn_http_req_t *req);
/* The path, still percent-encoded, without the query; "/..." */
const char *jn_http_req_path(const jn_http_req_t *req);
/* The query string after '?', not decoded, or NULL when there is none. */
const char *jn_http_req_query(const jn_http_req_t *req);
/* The pattern of the route that matched. */
const char *jn_http_req_route(const jn_http_req_t *req);
/* A {name} parameter, percent-decoded, or NULL. */
const char *jn_http_req_param(const jn_http_req_t *req, const char *name);
/* First header with that name (any case), or NULL. Values are trimmed. */
const char *jn_http_req_header(const jn_http_req_t *req, const char *name);
size_t jn_http_req_header_count(const jn_http_req_t *req);
/* The i-th header in order of arrival; its name lower-cased. 0, or -1 past the end. */
int jn_http_req_header_at(const jn_http_req_t *req, size_t i, const char **name,
                          const char **value);
/* The body (NUL-terminated for convenience; *len excludes the NUL), "" when empty. */
const char *jn_http_req_body(const jn_http_req_t *req, size_t *len);
/* The request id: the client's X-Request-Id when well-formed, else generated. */
const char *jn_http_req_id(const jn_http_req_t *req);
/* The client's address (numeric), after the X-Forwarded-For policy. */
const char *jn_http_req_client(const jn_http_req_t *req);
/* Non-zero once the client went away. */
int jn_http_req_cancelled(const jn_http_req_t *req);
/* Sets (or, with a NULL fn, clears) the cancel callback. */
void jn_http_req_on_cancel(jn_http_req_t *req, jn_http_cancel_fn fn, void *ud);

/* ---- Responding ---- */

typedef struct {
    const char *name;
    const char *value;
} jn_http_field_t;

/* Answers `req` and releases it; call exactly once per request. The server
 * writes the status line, Date, Content-Length, X-Request-Id and Connection;
 * `headers` may not set those (nor Transfer-Encoding, Keep-Alive, Upgrade,
 * Trailer). `body` is copied. Status 200..599; 204 and 304 have no body.
 * Returns 0 when the response is queued, 1 when the client is gone (the
 * response is dropped), -1 when the response is invalid: a 500
 * internal_error is sent instead and the reason is logged. */
int jn_http_respond(jn_http_req_t *req, int status, const jn_http_field_t *headers, size_t nheaders,
                    const void *body, size_t body_len);
/* A JSON body: adds `Content-Type: application/json`. */
int jn_http_respond_json(jn_http_req_t *req, int status, const char *json, size_t len);
/* `{"error":{"code":"<code>","message":"<message>"}}` with `status`; `code`
 * is [a-z0-9_]+ and `message` is escaped. Never put a secret in either. */
int jn_http_respond_error(jn_http_req_t *req, int status, const char *code, const char *message);

/* ---- Metrics ---- */

typedef struct {
    uint64_t connections_accepted;
    uint64_t connections_refused; /* over max_connections */
    uint64_t connections_open;    /* right now */
    uint64_t requests;            /* request heads received */
    uint64_t requests_in_flight;  /* held by handlers right now */
    uint64_t rate_limited;        /* answered 429 */
    uint64_t protocol_errors;     /* malformed or over a limit: 400, 413, 417, 431, 501, 505 */
    uint64_t header_timeouts;
    uint64_t body_timeouts;
    uint64_t idle_timeouts;
    uint64_t write_timeouts;
    uint64_t output_overflows; /* closed for not reading its responses */
    uint64_t client_aborts;    /* the client went away with a request in flight */
    uint64_t bytes_received;
    uint64_t bytes_sent;
} jn_http_server_stats_t;

/* Per route and method; index 0 counts the requests no route matched. */
typedef struct {
    const char *method;                        /* NULL for index 0 */
    const char *pattern;                       /* NULL for index 0 */
    uint64_t status[500];                      /* responses by status - 100 */
    uint64_t latency[JN_HTTP_LATENCY_BUCKETS]; /* first byte to response queued */
    uint64_t latency_sum_ns;
    uint64_t count;
} jn_http_route_stats_t;

void jn_http_server_stats(const jn_http_server_t *srv, jn_http_server_stats_t *out);
/* Routes + 1 entries; each valid until the server is destroyed. */
size_t jn_http_server_route_stats_count(const jn_http_server_t *srv);
const jn_http_route_stats_t *jn_http_server_route_stats(const jn_http_server_t *srv, size_t i);

#endif
