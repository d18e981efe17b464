/* Internals of the HTTP server shared by its files (http_server*.c): the
 * strict request parser, the router, address helpers. Not a public header:
 * the tests include it to drive the parser directly. */
#ifndef JUNCTION_HTTP_SERVER_INTERNAL_H
#define JUNCTION_HTTP_SERVER_INTERNAL_H

#include "junction/http_server.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Why a request is refused: a status, a stable code and a fixed message. The
 * message never quotes the request (it may carry a secret). */
typedef struct {
    int status;
    const char *code;
    const char *message;
} hs_fail_t;

/* ---- Request head ---- */

typedef struct {
    size_t scan;       /* next byte to examine */
    size_t line_start; /* start of the current line */
    size_t lines;      /* complete non-empty lines */
} hs_scan_t;

typedef struct {
    size_t max_header_bytes;
    size_t max_headers;
} hs_limits_t;

/* Looks for the end of a request head in p[0..n) (n grows between calls; the
 * state carries on). Returns 1 with *head_len (empty lines before the request
 * line included), 0 when more bytes are needed, -1 with `fail` (bare LF,
 * over a limit). */
int hs_scan_head(hs_scan_t *st, const char *p, size_t n, const hs_limits_t *lim, size_t *head_len,
                 hs_fail_t *fail);

typedef struct {
    char *name; /* lower-cased */
    char *value;
} hs_header_t;

typedef struct {
    char *method;
    const char *path; /* "/..." (still percent-encoded) */
    char *query;      /* after '?', or NULL */
    int minor;        /* HTTP/1.<minor>: 0 or 1 */
    hs_header_t *headers;
    size_t nheaders;
    const char *host;
    int64_t content_length; /* -1: none */
    bool chunked;
    bool close;             /* HTTP/1.0 or Connection: close */
    bool expect_continue;   /* Expect: 100-continue on HTTP/1.1 */
    const char *request_id; /* a well-formed X-Request-Id, or NULL */
} hs_head_t;

/* Parses a complete head of `len` bytes (as found by hs_scan_head) in place:
 * strings are NUL-terminated inside `p`, header names lower-cased. `headers`
 * has room for `max_headers`. 0, or -1 with `fail`. */
int hs_parse_head(char *p, size_t len, hs_header_t *headers, size_t max_headers, hs_head_t *h,
                  hs_fail_t *fail);

/* 1 when `id` is a well-formed request id. */
bool hs_request_id_valid(const char *id, size_t len);

/* ---- Chunked body ---- */

typedef struct {
    int state;
    uint64_t size; /* data bytes left in the current chunk */
    int digits;
    size_t ext_len;
    uint64_t total; /* data bytes so far */
    uint64_t max_body;
    size_t trailer_bytes, trailers;
    hs_limits_t lim;
} hs_chunked_t;

enum { HS_CHUNK_MORE = 0, HS_CHUNK_DATA = 1, HS_CHUNK_DONE = 2, HS_CHUNK_FAIL = -1 };

void hs_chunked_init(hs_chunked_t *st, uint64_t max_body, const hs_limits_t *lim);
/* Decodes from p[0..n): *consumed bytes are used. Returns HS_CHUNK_DATA with
 * a span of body bytes (inside the consumed ones), HS_CHUNK_MORE when every
 * byte was consumed without completing data, HS_CHUNK_DONE after the last
 * chunk and trailers, HS_CHUNK_FAIL with `fail` (413 when a chunk would take
 * the body over max_body, before its data is read). */
int hs_chunked_step(hs_chunked_t *st, const char *p, size_t n, size_t *consumed, const char **data,
                    size_t *data_len, hs_fail_t *fail);

/* ---- Addresses ---- */

/* An address as 16 bytes (IPv4 mapped into ::ffff:0:0/96) and a prefix. */
typedef struct {
    uint8_t addr[16];
    int bits;
} hs_cidr_t;

/* "10.0.0.0/8", "2001:db8::/32", or an address alone (/32, /128). */
int hs_cidr_parse(const char *s, hs_cidr_t *out, char *err, size_t errlen);
bool hs_cidr_match(const hs_cidr_t *c, const uint8_t addr[16]);
/* sockaddr to 16 bytes; 0 or -1 for another family. */
int hs_addr_bytes(const struct sockaddr *sa, uint8_t out[16]);
/* A numeric address (v4 or v6) to 16 bytes; 0 or -1. */
int hs_addr_parse(const char *s, size_t len, uint8_t out[16]);
/* 16 bytes to the numeric form (IPv4 for mapped addresses). */
void hs_addr_format(const uint8_t addr[16], char *buf, size_t len);

/* ---- Router ---- */

typedef struct hs_route {
    char *method;
    char *pattern;
    char **segs;    /* literal segment, or NULL for a parameter */
    char **params;  /* parameter name at that position, or NULL */
    size_t *seglen; /* a literal segment's length */
    size_t nsegs;
    jn_http_handler_fn handler;
    void *ud;
    jn_http_route_opts_t opts;
    jn_http_route_stats_t stats;
} hs_route_t;

typedef struct {
    hs_route_t **routes;
    size_t n, cap;
    jn_http_route_stats_t unrouted;
} hs_router_t;

typedef struct {
    size_t n;
    const char *name[JN_HTTP_MAX_PARAMS];
    const char *raw[JN_HTTP_MAX_PARAMS]; /* spans of the path, percent-encoded */
    size_t raw_len[JN_HTTP_MAX_PARAMS];
} hs_match_t;

void hs_router_init(hs_router_t *r);
void hs_router_free(hs_router_t *r);
int hs_router_add(hs_router_t *r, const char *method, const char *pattern,
                  jn_http_handler_fn handler, void *ud, const jn_http_route_opts_t *opts, char *err,
                  size_t errlen);
/* The route for `method` and `path`, with its parameters in `m`; NULL with
 * *status 404, or 405 and the methods allowed for the path in `allow`
 * ("GET, HEAD"). A HEAD request falls back to the GET route. */
hs_route_t *hs_router_match(const hs_router_t *r, const char *method, const char *path,
                            hs_match_t *m, int *status, char *allow, size_t allowlen);
/* Decodes %XX escapes of src[0..len) into dst (room for len + 1); -1 when an
 * escape is malformed or decodes to NUL. */
int hs_percent_decode(const char *src, size_t len, char *dst);

/* Character classes of RFC 9110. */
bool hs_is_tchar(unsigned char c);

#endif
