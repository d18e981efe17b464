#include "http_peer.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PEER_DRIP_BYTES 100
#define PEER_DRIP_INTERVAL_MS 20
#define PEER_REDIRECT_DELAY_MS 100
#define PEER_CHUNK 16384

typedef struct peer_conn peer_conn_t;

struct http_peer {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int port;
    unsigned connections;
    unsigned live;
    unsigned max_live;
    unsigned refs;     /* listener + connections not yet freed */
    unsigned requests; /* requests dispatched */
    unsigned flaky;    /* requests to /flaky/N so far */
    bool stopping;
    peer_conn_t *conns;
};

struct peer_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    http_peer_t *peer;
    peer_conn_t *prev, *next;
    char rbuf[16384];
    char *in;
    size_t in_len, in_cap;
    int open_handles;
    int pending_writes;
    bool close_after_write;
    bool closing;
    bool busy; /* a timed behaviour is running: later requests wait */
    bool head;
    size_t drip_left;
    char location[64]; /* for a delayed redirect; empty for the final 200 */
};

typedef struct {
    uv_write_t req;
    peer_conn_t *conn;
    char data[];
} peer_write_t;

typedef struct {
    char method[16];
    char target[1024];
    const char *raw;
    size_t raw_len;
} peer_req_t;

static void conn_process(peer_conn_t *c);

static void peer_release(http_peer_t *p)
{
    if (--p->refs == 0 && p->stopping)
        free(p);
}

static void on_conn_closed(uv_handle_t *h)
{
    peer_conn_t *c = h->data;
    http_peer_t *p = c->peer;

    if (--c->open_handles > 0)
        return;
    free(c->in);
    free(c);
    peer_release(p);
}

static void conn_close(peer_conn_t *c)
{
    http_peer_t *p = c->peer;

    if (c->closing)
        return;
    c->closing = true;
    p->live--;
    if (c->prev)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

static void on_written(uv_write_t *req, int status)
{
    peer_write_t *w = (peer_write_t *)req;
    peer_conn_t *c = w->conn;

    free(w);
    c->pending_writes--;
    if (status < 0 || (c->close_after_write && c->pending_writes == 0))
        conn_close(c);
}

static void conn_write(peer_conn_t *c, const char *data, size_t len)
{
    peer_write_t *w;
    uv_buf_t buf;

    if (c->closing)
        return;
    w = malloc(sizeof *w + len);
    if (!w) {
        conn_close(c);
        return;
    }
    memcpy(w->data, data, len);
    w->conn = c;
    buf = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_written) != 0) {
        free(w);
        conn_close(c);
        return;
    }
    c->pending_writes++;
}

static void conn_write_str(peer_conn_t *c, const char *s)
{
    conn_write(c, s, strlen(s));
}

/* Closes once everything queued has been written. */
static void conn_finish(peer_conn_t *c)
{
    c->close_after_write = true;
    if (c->pending_writes == 0)
        conn_close(c);
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 404:
        return "Not Found";
    default:
        return "Status";
    }
}

static void reply(peer_conn_t *c, int status, const char *headers, const char *body, size_t len)
{
    char head[1024];

    /* The peer's canned headers are short; the precision keeps the bound provable. */
    snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n%.900s\r\n", status,
             reason(status), len, headers ? headers : "");
    conn_write_str(c, head);
    if (!c->head && len)
        conn_write(c, body, len);
}

static void reply_redirect(peer_conn_t *c, int status, const char *location)
{
    char headers[1200];

    snprintf(headers, sizeof headers, "Location: %s\r\n", location);
    reply(c, status, headers, "redirecting", 11);
}

static void reply_big(peer_conn_t *c, size_t n)
{
    char *body = malloc(n ? n : 1);

    if (!body) {
        conn_close(c);
        return;
    }
    memset(body, 'x', n);
    reply(c, 200, "Content-Type: application/octet-stream\r\n", body, n);
    free(body);
}

static void reply_big_chunked(peer_conn_t *c, size_t n)
{
    static char chunk[PEER_CHUNK + 32];
    char size_line[32];

    conn_write_str(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    if (c->head)
        return;
    memset(chunk, 'x', sizeof chunk);
    while (n > 0) {
        size_t part = n < PEER_CHUNK ? n : PEER_CHUNK;
        snprintf(size_line, sizeof size_line, "%zx\r\n", part);
        conn_write_str(c, size_line);
        conn_write(c, chunk, part);
        conn_write_str(c, "\r\n");
        n -= part;
    }
    conn_write_str(c, "0\r\n\r\n");
}

static void on_drip(uv_timer_t *t)
{
    peer_conn_t *c = t->data;

    conn_write(c, "d", 1);
    if (--c->drip_left > 0)
        return;
    uv_timer_stop(t);
    c->busy = false;
    conn_process(c);
}

static void start_drip(peer_conn_t *c)
{
    char head[128];

    snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", PEER_DRIP_BYTES);
    conn_write_str(c, head);
    c->busy = true;
    c->drip_left = PEER_DRIP_BYTES;
    uv_timer_start(&c->timer, on_drip, PEER_DRIP_INTERVAL_MS, PEER_DRIP_INTERVAL_MS);
}

static void on_delay(uv_timer_t *t)
{
    peer_conn_t *c = t->data;

    if (c->location[0])
        reply_redirect(c, 302, c->location);
    else
        reply(c, 200, NULL, "delayed done", 12);
    c->busy = false;
    conn_process(c);
}

static void start_delayed_redirect(peer_conn_t *c, int n)
{
    c->location[0] = '\0';
    if (n > 0)
        snprintf(c->location, sizeof c->location, "%d", n - 1);
    c->busy = true;
    uv_timer_start(&c->timer, on_delay, PEER_REDIRECT_DELAY_MS, 0);
}

/* /redirect?code=C&to=URL */
static void reply_redirect_query(peer_conn_t *c, const char *query)
{
    int status = 302;
    const char *to;

    if (strncmp(query, "code=", 5) == 0) {
        status = atoi(query + 5);
        query = strchr(query, '&') ? strchr(query, '&') + 1 : "";
    }
    to = strncmp(query, "to=", 3) == 0 ? query + 3 : "/";
    reply_redirect(c, status, to);
}

static void reply_hello(peer_conn_t *c)
{
    reply(c, 200,
          "Content-Type: text/plain\r\n"
          "Link: <http://example.test/page2>; rel=\"next\"\r\n"
          "X-Multi: one\r\n"
          "X-Multi: two\r\n"
          "X-Padded:    padded value   \r\n",
          "hello world", 11);
}

static void reply_chain(peer_conn_t *c, int n)
{
    char location[32];

    if (n <= 0) {
        reply(c, 200, NULL, "chain done", 10);
        return;
    }
    snprintf(location, sizeof location, "%d", n - 1);
    reply_redirect(c, 302, location);
}

static void dispatch(peer_conn_t *c, const peer_req_t *r)
{
    const char *t = r->target;
    size_t n;
    int i;

    c->head = strcmp(r->method, "HEAD") == 0;
    c->peer->requests++;
    if (sscanf(t, "/status/%d", &i) == 1 && i >= 200 && i <= 599) {
        /* /status/C[?retry_after=V]: status C, with Retry-After: V */
        const char *q = strstr(t, "?retry_after=");
        char hdr[128] = "";
        if (q)
            snprintf(hdr, sizeof hdr, "Retry-After: %.64s\r\n", q + 13);
        reply(c, i, hdr, "status", 6);
    } else if (sscanf(t, "/flaky/%d", &i) == 1) {
        /* the first N requests to any /flaky/N get 503, later ones 200 */
        if (c->peer->flaky++ < (unsigned)i)
            reply(c, 503, NULL, "unavailable", 11);
        else
            reply(c, 200, NULL, "recovered", 9);
    } else if (strcmp(t, "/hang") == 0) {
        c->busy = true; /* never answers; the connection stays open */
    } else if (strcmp(t, "/hello") == 0) {
        reply_hello(c);
    } else if (strcmp(t, "/echo") == 0) {
        reply(c, 200, "Content-Type: text/plain\r\n", r->raw, r->raw_len);
    } else if (sscanf(t, "/big/%zu", &n) == 1) {
        reply_big(c, n);
    } else if (sscanf(t, "/bigchunked/%zu", &n) == 1) {
        reply_big_chunked(c, n);
    } else if (strcmp(t, "/folded") == 0) {
        reply(c, 200, "X-Folded: first\r\n   second\r\nX-After: yes\r\n", "ok", 2);
    } else if (strcmp(t, "/interim") == 0) {
        conn_write_str(c, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n");
        reply(c, 200, "X-Final: yes\r\n", "final", 5);
    } else if (strcmp(t, "/slow") == 0) {
        start_drip(c);
    } else if (strcmp(t, "/truncated") == 0) {
        conn_write_str(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
        conn_finish(c);
    } else if (strcmp(t, "/garbage") == 0) {
        conn_write_str(c, "this is not an HTTP response\r\n\r\n");
        conn_finish(c);
    } else if (strcmp(t, "/badchunk") == 0) {
        conn_write_str(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "zz\r\nhello\r\n0\r\n\r\n");
        conn_finish(c);
    } else if (sscanf(t, "/chain/%d", &i) == 1) {
        reply_chain(c, i);
    } else if (strcmp(t, "/loop") == 0) {
        reply_redirect(c, 302, "/loop");
    } else if (strncmp(t, "/redirect?", 10) == 0) {
        reply_redirect_query(c, t + 10);
    } else if (strcmp(t, "/post303") == 0) {
        reply_redirect(c, 303, "/echo");
    } else if (sscanf(t, "/delayredir/%d", &i) == 1) {
        start_delayed_redirect(c, i);
    } else {
        reply(c, 404, NULL, "not found", 9);
    }
}

static size_t content_length(const char *head, size_t len)
{
    const char *p = head, *end = head + len;

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            break;
        if (strncasecmp(p, "Content-Length:", 15) == 0)
            return strtoul(p + 15, NULL, 10);
        p = eol + 1;
    }
    return 0;
}

/* Handles one complete request at the head of the input; returns the bytes it used. */
static size_t try_request(peer_conn_t *c)
{
    const char *end;
    size_t head_len, body_len;
    peer_req_t r;

    if (c->in_len > 0 && (unsigned char)c->in[0] == 0x16) { /* TLS ClientHello */
        conn_write_str(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        conn_finish(c);
        return c->in_len;
    }
    end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    head_len = (size_t)(end - c->in) + 4;
    body_len = content_length(c->in, head_len);
    if (c->in_len < head_len + body_len)
        return 0;
    memset(&r, 0, sizeof r);
    if (sscanf(c->in, "%15s %1023s", r.method, r.target) != 2) {
        conn_finish(c);
        return c->in_len;
    }
    r.raw = c->in;
    r.raw_len = head_len + body_len;
    dispatch(c, &r);
    return head_len + body_len;
}

static void conn_process(peer_conn_t *c)
{
    while (!c->busy && !c->closing && !c->close_after_write) {
        size_t used = try_request(c);
        if (used == 0)
            return;
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    peer_conn_t *c = h->data;

    (void)suggested;
    *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    peer_conn_t *c = s->data;

    (void)buf;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (nread == 0 || c->closing)
        return;
    if (c->in_len + (size_t)nread + 1 > c->in_cap) {
        size_t cap = (c->in_len + (size_t)nread + 1) * 2;
        char *in = realloc(c->in, cap);
        if (!in) {
            conn_close(c);
            return;
        }
        c->in = in;
        c->in_cap = cap;
    }
    memcpy(c->in + c->in_len, c->rbuf, (size_t)nread);
    c->in_len += (size_t)nread;
    c->in[c->in_len] = '\0';
    conn_process(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    http_peer_t *p = server->data;
    peer_conn_t *c;

    if (status < 0 || p->stopping)
        return;
    c = calloc(1, sizeof *c);
    if (!c)
        return;
    uv_tcp_init(p->loop, &c->tcp);
    uv_timer_init(p->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->peer = p;
    c->open_handles = 2;
    c->next = p->conns;
    if (p->conns)
        p->conns->prev = c;
    p->conns = c;
    p->refs++;
    p->connections++;
    if (++p->live > p->max_live)
        p->max_live = p->live;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
}

static void on_listener_closed(uv_handle_t *h)
{
    peer_release(h->data);
}

http_peer_t *http_peer_start(uv_loop_t *loop)
{
    struct sockaddr_in addr;
    struct sockaddr_storage name;
    int namelen = sizeof name;
    http_peer_t *p = calloc(1, sizeof *p);

    if (!p)
        return NULL;
    p->loop = loop;
    p->refs = 1;
    uv_tcp_init(loop, &p->listener);
    p->listener.data = p;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    if (uv_tcp_bind(&p->listener, (const struct sockaddr *)&addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&p->listener, 512, on_connection) != 0 ||
        uv_tcp_getsockname(&p->listener, (struct sockaddr *)&name, &namelen) != 0) {
        http_peer_stop(p);
        return NULL;
    }
    p->port = ntohs(((struct sockaddr_in *)&name)->sin_port);
    return p;
}

int http_peer_port(const http_peer_t *peer)
{
    return peer->port;
}

unsigned http_peer_requests(const http_peer_t *peer)
{
    return peer->requests;
}

unsigned http_peer_connections(const http_peer_t *peer)
{
    return peer->connections;
}

unsigned http_peer_live(const http_peer_t *peer)
{
    return peer->live;
}

unsigned http_peer_max_live(const http_peer_t *peer)
{
    return peer->max_live;
}

void http_peer_stop(http_peer_t *peer)
{
    if (!peer)
        return;
    peer->stopping = true;
    while (peer->conns)
        conn_close(peer->conns);
    uv_close((uv_handle_t *)&peer->listener, on_listener_closed);
}
