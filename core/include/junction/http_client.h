/* Asynchronous HTTP client: libcurl's multi interface driven by a libuv loop.
 *
 * Nothing blocks the loop: sockets are watched with uv_poll, curl's timer with
 * a uv_timer, and completions are reported through a callback on the loop
 * thread. Redirects are followed by this module (not by curl) so that every
 * hop passes the caller's redirect policy, and credentials (auth headers) are
 * dropped when a hop leaves the original origin.
 *
 * Defaults: TLS peer and host verification on; http and https only; connect
 * timeout 10 s; total timeout 60 s; response cap 32 MiB; 5 redirects.
 *
 * No proxy is used (the *_proxy environment variables are ignored): the address
 * policy could not see where a proxy connects. 301/302 turn a POST into a GET
 * and 303 turns any method but HEAD into a GET, without the body; 307/308 keep
 * both. Response headers are the final hop's.
 */
#ifndef JUNCTION_HTTP_CLIENT_H
#define JUNCTION_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

typedef enum {
    JN_HTTP_OK = 0,
    JN_HTTP_EINVAL,     /* bad request description (URL, method, header) */
    JN_HTTP_ECONNECT,   /* DNS failure, connection refused or reset */
    JN_HTTP_ETIMEDOUT,  /* connect or total timeout */
    JN_HTTP_ETLS,       /* TLS handshake or certificate verification failed */
    JN_HTTP_ETOOBIG,    /* response body over max_response_bytes */
    JN_HTTP_EREDIRECTS, /* more than max_redirects hops */
    JN_HTTP_EDENIED,    /* refused by the address or redirect policy */
    JN_HTTP_EPROTO,     /* malformed HTTP from the peer, truncated body */
    JN_HTTP_ECANCELLED,
    JN_HTTP_EINTERNAL,
    /* From the traffic layer (junction/traffic.h), never from the client: */
    JN_HTTP_ECIRCUIT,    /* the provider's circuit breaker is open */
    JN_HTTP_ERATELIMITED /* the rate-limit wait would outlast the call's deadline */
} jn_http_error_t;

const char *jn_http_error_name(jn_http_error_t err);

typedef struct {
    char *name; /* lower-cased */
    char *value;
} jn_http_header_t;

typedef struct jn_http_client jn_http_client_t;
typedef struct jn_http_call jn_http_call_t;

/* Called with the address a hostname resolved to, before connecting.
 * Return 0 to allow, non-zero to refuse (the call fails with JN_HTTP_EDENIED).
 * Also called before a pooled connection opened by another call is reused, so
 * it may run more than once per call. It runs inside libcurl: it may cancel
 * calls or destroy the client (effective once it returns), not start calls. */
typedef int (*jn_http_addr_policy_fn)(void *ud, const char *host, const struct sockaddr *addr);
/* Called before following a redirect from `from_url` to `to_url`.
 * Return 0 to follow, non-zero to refuse (JN_HTTP_EDENIED). */
typedef int (*jn_http_redirect_policy_fn)(void *ud, const char *from_url, const char *to_url);

typedef struct {
    const char *method; /* "GET" when NULL */
    const char *url;
    /* "Name: value" lines. */
    const char *const *headers;
    size_t nheaders;
    /* Credential headers ("Name: value"): sent only to the request's own origin
     * (scheme, host, port); dropped on a redirect that leaves it, and not sent
     * again even if a later hop comes back. Never logged. Authorization,
     * Proxy-Authorization and Cookie lines in `headers` are dropped likewise. */
    const char *const *auth_headers;
    size_t nauth_headers;
    const void *body;
    size_t body_len;
    long connect_timeout_ms;   /* 0: client default */
    long timeout_ms;           /* 0: client default; whole call, redirects included */
    size_t max_response_bytes; /* 0: client default */
    int max_redirects;         /* -1: client default; 0: do not follow (3xx returned as is) */
    jn_http_addr_policy_fn addr_policy;
    jn_http_redirect_policy_fn redirect_policy;
    void *policy_ud;
    /* Order among calls waiting for a transfer slot (max_total_connections):
     * lower values first, equal values first come first served. */
    uint64_t priority;
} jn_http_request_t;

/* Zeroes `req` and sets max_redirects to -1 (client default): a request built
 * from a plain zero initializer does not follow redirects. */
void jn_http_request_init(jn_http_request_t *req);

typedef struct {
    jn_http_error_t error;
    /* "METHOD scheme://host[:port]/path: detail"; never contains header values,
     * URL userinfo, query or fragment. Empty on success. */
    char error_msg[256];
    long status; /* 0 when no response */
    jn_http_header_t *headers;
    size_t nheaders;
    /* On an error, body is NULL and headers empty; status is the last seen. */
    char *body; /* NUL-terminated for convenience; body_len excludes the NUL */
    size_t body_len;
    char *effective_url;
    int redirects;
    double total_ms;
    /* JN_HTTP_ECONNECT after the request may have reached the server (reset
     * while sending or before an answer), rather than no connection at all. */
    int maybe_sent;
} jn_http_response_t;

/* `resp` belongs to the callee: release it with jn_http_response_free. */
typedef void (*jn_http_done_fn)(jn_http_response_t *resp, void *ud);

typedef struct {
    long connect_timeout_ms;
    long timeout_ms;
    size_t max_response_bytes;
    int max_redirects;
    const char *ca_file; /* NULL: system store */
    const char *user_agent;
    /* 0: unlimited. Also the number of transfers handed to curl at once: later
     * calls wait in the client, first in first out, their timeout running. */
    long max_total_connections;
} jn_http_client_opts_t;

void jn_http_client_opts_init(jn_http_client_opts_t *opts);
jn_http_client_t *jn_http_client_create(uv_loop_t *loop, const jn_http_client_opts_t *opts);
/* Cancels every call in flight (their callbacks are not called) and closes the
 * client's handles; memory is released once the loop has run the close callbacks. */
void jn_http_client_destroy(jn_http_client_t *client);

/* Start a call. Returns 0 and (if out_call) a handle valid until `done` runs or
 * the call is cancelled; on a bad request returns a jn_http_error_t and does not
 * call `done`. `req` and everything it points to may be freed after return. */
int jn_http_client_send(jn_http_client_t *client, const jn_http_request_t *req,
                        jn_http_done_fn done, void *ud, jn_http_call_t **out_call);
/* Cancel a call in flight; its callback is not called. */
void jn_http_call_cancel(jn_http_call_t *call);
size_t jn_http_client_in_flight(const jn_http_client_t *client);

/* Writes "scheme://host[:port]/path" of `url` into buf: no userinfo, query
 * or fragment, which may carry secrets. The form error messages use. */
void jn_http_shown_url(const char *url, char *buf, size_t len);

const char *jn_http_response_header(const jn_http_response_t *resp, const char *name);
void jn_http_response_free(jn_http_response_t *resp);

#endif
