/* A small HTTP/1.1 server on 127.0.0.1 for the HTTP client tests. It runs on
 * the test's own libuv loop and serves canned behaviours by path:
 *
 *   /hello                 200 "hello world" with Link, X-Multi and padded headers
 *   /echo                  200, the body is the raw request received (line, headers, body)
 *   /big/N                 200 with N bytes and a Content-Length
 *   /bigchunked/N          200 with N bytes, chunked (no Content-Length)
 *   /folded                a header continued on an obs-fold line
 *   /interim               a 103 interim response, then the 200
 *   /slow                  Content-Length 100, one byte every 20 ms
 *   /truncated             Content-Length 100, 10 bytes, then close
 *   /garbage               a non-HTTP reply, then close
 *   /badchunk              a malformed chunked body
 *   /chain/N               302 to the relative "N-1"; /chain/0 is 200 "chain done"
 *   /loop                  302 to /loop
 *   /redirect?code=C&to=U  C (default 302) with "Location: U" (`to` must come last)
 *   /post303               303 to /echo
 *   /delayredir/N          after 100 ms, 302 to the relative "N-1"; /delayredir/0 is 200
 *   /status/C[?retry_after=V]  status C (200..599), with "Retry-After: V" when given
 *   /flaky/N               the peer's first N requests to /flaky/... get 503, later ones 200
 *   /hang                  never answered (the connection stays open)
 *
 * Anything else is a 404. HEAD gets the headers without the body. Connections
 * are kept alive except where a behaviour closes them. A TLS ClientHello gets
 * a plain-text 400 (the client then fails its handshake).
 */
#ifndef JUNCTION_TESTS_HTTP_PEER_H
#define JUNCTION_TESTS_HTTP_PEER_H

#include <uv.h>

typedef struct http_peer http_peer_t;

http_peer_t *http_peer_start(uv_loop_t *loop);
int http_peer_port(const http_peer_t *peer);
/* Requests received so far. */
unsigned http_peer_requests(const http_peer_t *peer);
/* Connections accepted so far, open right now, and open at the same time at most. */
unsigned http_peer_connections(const http_peer_t *peer);
unsigned http_peer_live(const http_peer_t *peer);
unsigned http_peer_max_live(const http_peer_t *peer);
/* Closes the listener and every connection; memory is released by the close
 * callbacks, so run the loop afterwards. */
void http_peer_stop(http_peer_t *peer);

#endif
