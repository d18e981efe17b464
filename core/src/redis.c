#include "junction/redis.h"

#include "junction/clock.h"
#include "junction/crypto.h"
#include "junction/error.h"
#include "junction/secmem.h"

#include <arpa/inet.h>
#include <hiredis/async.h>
#include <limits.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define DEFAULT_CONNECT_TIMEOUT_MS 250
#define DEFAULT_COMMAND_TIMEOUT_MS 250
#define DEFAULT_RECONNECT_MIN_MS 50
#define DEFAULT_RECONNECT_MAX_MS 2000
#define MSG_MAX 256
#define NAME_MAX_LEN 300
#define ERROR_MAX (NAME_MAX_LEN + MSG_MAX + 32)

/* Commands that would put the connection into a mode where replies no longer
 * pair one to one with commands (pub/sub, MONITOR, RESP3, CLIENT REPLY), or
 * end the session's settings: the callback contract could not be kept. */
static const char *const refused_commands[] = {
    "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe",
    "monitor",   "hello",      "sync",       "psync",       "reset",        NULL};

typedef struct conn conn_t;
typedef struct req req_t;
typedef struct chan chan_t;

typedef enum { MODE_UNSET, MODE_COMMANDS, MODE_SUBSCRIBER } client_mode_t;
typedef enum { REQ_NOWHERE, REQ_QUEUED, REQ_PENDING } req_where_t;
typedef enum { CHAN_IDLE, CHAN_SUBSCRIBING, CHAN_SUBSCRIBED, CHAN_UNSUBSCRIBING } chan_state_t;

/* One hiredis connection and its libuv watcher. The client swaps connections
 * on reconnect; a connection that is dropped or lost is detached at once
 * (r->conn no longer points at it) and freed when hiredis is done with it. */
struct conn {
    jn_redis_t *r;
    redisAsyncContext *ac; /* NULL once hiredis has released it */
    uv_poll_t poll;
    int events;
    bool ready;         /* the handshake completed */
    int handshake_left; /* handshake replies still awaited */
    bool in_read;       /* inside redisAsyncHandleRead: its callbacks' commands wait for its end */
    bool flushing;      /* inside conn_flush: a write left unfinished arms the watcher */
    bool write_pending; /* hiredis holds output that conn_flush has not written yet */
    char why[MSG_MAX];  /* why it was detached, for the commands that were on it */
};

struct req {
    jn_redis_t *r;
    req_t *prev, *next; /* in r->queue or r->pending, per `where` */
    req_where_t where;
    conn_t *conn;  /* the connection it was sent on */
    uint64_t sent; /* loop time when handed to hiredis */
    uint64_t deadline;
    long timeout_ms;
    bool done; /* the caller's callback has run */
    jn_redis_reply_fn fn;
    void *ud;
    char *cmd; /* RESP-formatted, kept until sent (scripts: until done) */
    size_t cmdlen;
    jn_redis_script_t *script;
    int attempt;
    req_t *dnext; /* in r->deferred */
    int dstatus;
    char *derror;
};

struct jn_redis_sub {
    chan_t *chan;
    jn_redis_sub_t *prev, *next;
    jn_redis_sub_fn fn;
    void *ud;
    bool ready;
    bool dead; /* unsubscribed while its channel was dispatching */
};

struct chan {
    jn_redis_t *r;
    chan_t *prev, *next;
    char *name;
    size_t len;
    jn_redis_sub_t *subs;
    size_t nsubs; /* live subscriptions */
    chan_state_t state;
    conn_t *conn;      /* whose hiredis subscription table holds the channel */
    uint64_t deadline; /* for the reply to SUBSCRIBE or UNSUBSCRIBE */
    int dispatching;
};

struct jn_redis_script {
    jn_redis_script_t *next;
    const char *given; /* the pointer registered: a fast path for static sources */
    char *source;
    size_t len;
    char sha[41];
};

typedef struct {
    uv_getaddrinfo_t req;
    jn_redis_t *r;
} dns_t;

struct jn_redis {
    uv_loop_t *loop;
    jn_redis_url_t url;
    char name[NAME_MAX_LEN];
    long connect_timeout_ms;
    long command_timeout_ms;
    long reconnect_min_ms;
    long reconnect_max_ms;
    client_mode_t mode;

    jn_redis_status_t status;
    conn_t *conn;
    dns_t *dns;      /* a resolution in flight */
    bool attempting; /* a connection attempt is in flight (conn_timer is its deadline) */
    long backoff_ms; /* the last reconnect delay before jitter; 0 after a success */

    uv_timer_t conn_timer; /* connect deadline, or the reconnect delay */
    uv_timer_t cmd_timer;  /* earliest command deadline */
    uint64_t cmd_timer_due;
    uv_idle_t idle;     /* runs deferred callbacks, never from inside a caller's call */
    uv_prepare_t flush; /* writes commands sent outside a read before the loop polls */

    req_t *queue_head, *queue_tail; /* before the first connection exists */
    req_t *pending_head, *pending_tail;
    req_t *deferred_head, *deferred_tail;
    bool ready_scan; /* subscriptions may be waiting for READY */
    chan_t *chans;
    jn_redis_script_t *scripts;

    int open_handles;
    int holds; /* jn_redis_hold */
    bool closing;
};

static void start_connect(jn_redis_t *r);
static void conn_detach(jn_redis_t *r, conn_t *c, bool free_ac, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void chan_update(chan_t *ch);
static void chan_maybe_free(chan_t *ch);
static void arm_cmd_timer(jn_redis_t *r, uint64_t deadline);
static void on_conn_timer(uv_timer_t *t);
static void on_cmd_timer(uv_timer_t *t);
static void on_idle(uv_idle_t *h);
static void on_flush(uv_prepare_t *h);

const char *jn_redis_error_name(int status)
{
    switch (status) {
    case JN_REDIS_OK:
        return "ok";
    case JN_REDIS_EINVAL:
        return "invalid argument";
    case JN_REDIS_EDOWN:
        return "redis down";
    case JN_REDIS_ETIMEDOUT:
        return "timed out";
    case JN_REDIS_EDISCONNECTED:
        return "disconnected";
    case JN_REDIS_EREPLY:
        return "error reply";
    case JN_REDIS_EPROTO:
        return "unexpected reply";
    case JN_REDIS_ECLOSED:
        return "client closed";
    case JN_REDIS_ENOMEM:
        return "out of memory";
    }
    return "unknown";
}

const char *jn_redis_state_name(jn_redis_state_t state)
{
    switch (state) {
    case JN_REDIS_CONNECTING:
        return "connecting";
    case JN_REDIS_CONNECTED:
        return "connected";
    case JN_REDIS_DOWN:
        return "down";
    case JN_REDIS_CLOSED:
        return "closed";
    }
    return "unknown";
}

/* ---- URL ---- */

static int url_fail(jn_redis_url_t *out, char *err, size_t errlen, const char *msg)
{
    jn_redis_url_clear(out);
    return jn_errorf(err, errlen, "redis URL: %s", msg);
}

/* Percent-decodes in[0..len) into out (at least len bytes); -1 on a bad escape. */
static long pct_decode(const char *in, size_t len, char *out)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        if (in[i] == '%') {
            int hi, lo;

            if (i + 2 >= len)
                return -1;
            hi = jn_hex_value((unsigned char)in[i + 1]);
            lo = jn_hex_value((unsigned char)in[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            out[n++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[n++] = in[i];
        }
    }
    return (long)n;
}

static int parse_userinfo(const char *s, size_t len, jn_redis_url_t *out, char *err, size_t errlen)
{
    const char *colon = memchr(s, ':', len);
    size_t ulen, plen;
    char *pw;
    long n;

    if (colon == NULL)
        return url_fail(out, err, errlen,
                        "the user information must be :PASSWORD or USER:PASSWORD");
    ulen = (size_t)(colon - s);
    plen = len - ulen - 1;
    if (plen == 0)
        return url_fail(out, err, errlen, "the password is empty");
    if (ulen >= sizeof out->user)
        return url_fail(out, err, errlen, "the user name is longer than 127 bytes");
    n = pct_decode(s, ulen, out->user);
    if (n < 0)
        return url_fail(out, err, errlen, "bad percent-encoding in the user name");
    out->user[n] = '\0';
    for (long i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out->user[i];

        if (c <= ' ' || c == 0x7f)
            return url_fail(out, err, errlen,
                            "the user name contains a space or control character");
    }
    pw = jn_secmem_alloc(plen + 1);
    if (pw == NULL)
        return url_fail(out, err, errlen, "out of memory");
    n = pct_decode(colon + 1, plen, pw);
    if (n <= 0) {
        jn_secmem_free(pw);
        return url_fail(out, err, errlen, "bad percent-encoding in the password");
    }
    out->password = pw;
    out->password_len = (size_t)n;
    return 0;
}

/* Digits only, value <= max; -1 otherwise. */
static long parse_uint(const char *s, size_t len, long max)
{
    long v = 0;

    if (len == 0 || len > 10)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= max ? v : -1;
}

static int parse_host_port(const char *s, size_t len, jn_redis_url_t *out, char *err, size_t errlen)
{
    const char *port = NULL;
    size_t hlen, plen = 0;
    long p;

    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        struct in6_addr a6;

        if (close == NULL)
            return url_fail(out, err, errlen, "an IPv6 address must be closed with ']'");
        hlen = (size_t)(close - s - 1);
        if (hlen == 0 || hlen >= sizeof out->host)
            return url_fail(out, err, errlen, "the IPv6 address is empty or too long");
        memcpy(out->host, s + 1, hlen);
        out->host[hlen] = '\0';
        if (inet_pton(AF_INET6, out->host, &a6) != 1)
            return url_fail(out, err, errlen, "the address in brackets is not an IPv6 address");
        if ((size_t)(close - s + 1) < len) {
            if (close[1] != ':')
                return url_fail(out, err, errlen, "expected ':PORT' after the IPv6 address");
            port = close + 2;
            plen = len - (size_t)(port - s);
        }
    } else {
        const char *colon = memchr(s, ':', len);
        bool numeric = true;

        hlen = colon ? (size_t)(colon - s) : len;
        if (colon) {
            port = colon + 1;
            plen = len - hlen - 1;
        }
        if (hlen == 0)
            return url_fail(out, err, errlen, "the host is missing");
        if (hlen > 253)
            return url_fail(out, err, errlen, "the host name is longer than 253 characters");
        for (size_t i = 0; i < hlen; i++) {
            unsigned char c = (unsigned char)s[i];

            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == '_'))
                return url_fail(out, err, errlen,
                                "the host may hold only letters, digits, '.', '-' and '_' "
                                "(an IPv6 address goes in brackets)");
            if (!((c >= '0' && c <= '9') || c == '.'))
                numeric = false;
        }
        memcpy(out->host, s, hlen);
        out->host[hlen] = '\0';
        if (numeric) {
            struct in_addr a4;

            if (inet_pton(AF_INET, out->host, &a4) != 1)
                return url_fail(out, err, errlen, "the host is not a valid IPv4 address");
        }
    }
    if (port == NULL) {
        out->port = 6379;
        return 0;
    }
    p = parse_uint(port, plen, 65535);
    if (p < 1)
        return url_fail(out, err, errlen, "the port must be a number from 1 to 65535");
    out->port = (int)p;
    return 0;
}

void jn_redis_url_clear(jn_redis_url_t *url)
{
    if (url == NULL)
        return;
    jn_secmem_free(url->password);
    memset(url, 0, sizeof *url);
}

int jn_redis_url_parse(const char *url, jn_redis_url_t *out, char *err, size_t errlen)
{
    const char *rest, *end, *at;
    size_t len;

    memset(out, 0, sizeof *out);
    if (url == NULL || url[0] == '\0')
        return url_fail(out, err, errlen, "empty");
    if (strncmp(url, "rediss://", 9) == 0)
        return url_fail(out, err, errlen,
                        "rediss:// (TLS) is not supported; use redis:// on a private network "
                        "or unix:// for a local socket");
    if (strncmp(url, "redis://", 8) == 0) {
        rest = url + 8;
    } else if (strncmp(url, "unix://", 7) == 0) {
        rest = url + 7;
        out->is_unix = 1;
    } else {
        return url_fail(out, err, errlen,
                        "expected redis://[:PASSWORD@]HOST[:PORT][/DB] or unix:///PATH");
    }
    len = strlen(rest);
    end = rest + len;
    for (const char *p = rest; p < end; p++) {
        if ((unsigned char)*p < ' ' || *p == 0x7f)
            return url_fail(out, err, errlen, "control characters are not allowed");
    }

    if (!out->is_unix) {
        const char *slash;

        /* The user information ends at the last '@': a password may hold '@',
         * '/' or '?' unencoded, nothing after the host may hold an '@'. */
        at = memrchr(rest, '@', len);
        if (at != NULL) {
            if (parse_userinfo(rest, (size_t)(at - rest), out, err, errlen) < 0)
                return -1;
            rest = at + 1;
        }
        if (strpbrk(rest, "?#") != NULL)
            return url_fail(out, err, errlen, "query parameters and fragments are not supported");
        slash = strchr(rest, '/');
        if (parse_host_port(rest, slash ? (size_t)(slash - rest) : (size_t)(end - rest), out, err,
                            errlen) < 0)
            return -1;
        if (slash != NULL && slash[1] != '\0') {
            long db = parse_uint(slash + 1, strlen(slash + 1), INT_MAX);

            if (db < 0)
                return url_fail(out, err, errlen,
                                "the path must be /DB, a database number from 0 to 2147483647");
            out->db = (int)db;
        }
        return 0;
    }

    /* unix://[[USER]:PASSWORD@]/PATH[?db=N]: the path starts at the first "@/"
     * when there is user information, else right away. */
    if (rest[0] != '/') {
        at = strstr(rest, "@/");
        if (at == NULL)
            return url_fail(out, err, errlen, "expected unix:///ABSOLUTE/PATH");
        if (parse_userinfo(rest, (size_t)(at - rest), out, err, errlen) < 0)
            return -1;
        rest = at + 1;
    }
    {
        const char *q = strchr(rest, '?');
        size_t plen = q ? (size_t)(q - rest) : strlen(rest);

        if (strchr(rest, '#') != NULL)
            return url_fail(out, err, errlen, "fragments are not supported");
        if (plen < 2)
            return url_fail(out, err, errlen, "the socket path is missing");
        if (plen >= sizeof out->path)
            return url_fail(out, err, errlen, "the socket path is longer than 107 bytes");
        memcpy(out->path, rest, plen);
        out->path[plen] = '\0';
        if (q != NULL) {
            long db;

            if (strncmp(q, "?db=", 4) != 0)
                return url_fail(out, err, errlen, "the only query parameter is ?db=N");
            db = parse_uint(q + 4, strlen(q + 4), INT_MAX);
            if (db < 0)
                return url_fail(out, err, errlen,
                                "db must be a database number from 0 to 2147483647");
            out->db = (int)db;
        }
    }
    return 0;
}

/* ---- lifecycle helpers ---- */

static void maybe_free(jn_redis_t *r)
{
    jn_redis_script_t *s, *snext;

    if (!r->closing || r->open_handles > 0 || r->holds > 0)
        return;
    /* Channels are released with their connection; none should be left. */
    while (r->chans != NULL) {
        chan_t *ch = r->chans;

        r->chans = ch->next;
        while (ch->subs != NULL) {
            jn_redis_sub_t *sub = ch->subs;

            ch->subs = sub->next;
            free(sub);
        }
        free(ch->name);
        free(ch);
    }
    for (s = r->scripts; s; s = snext) {
        snext = s->next;
        free(s->source);
        free(s);
    }
    jn_redis_url_clear(&r->url);
    free(r);
}

static void handle_closed(uv_handle_t *h)
{
    jn_redis_t *r = h->data;

    r->open_handles--;
    maybe_free(r);
}

static void set_state(jn_redis_t *r, jn_redis_state_t state)
{
    if (r->status.state == state)
        return;
    r->status.state = state;
    r->status.since_ms = jn_now_ms();
}

static void req_free(req_t *q)
{
    free(q->cmd);
    free(q->derror);
    free(q);
}

static void list_unlink(req_t **head, req_t **tail, req_t *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        *head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        *tail = q->prev;
    q->prev = q->next = NULL;
}

static void list_append(req_t **head, req_t **tail, req_t *q)
{
    q->prev = *tail;
    q->next = NULL;
    if (*tail)
        (*tail)->next = q;
    else
        *head = q;
    *tail = q;
}

static void req_unlink(req_t *q)
{
    jn_redis_t *r = q->r;

    if (q->where == REQ_QUEUED)
        list_unlink(&r->queue_head, &r->queue_tail, q);
    else if (q->where == REQ_PENDING)
        list_unlink(&r->pending_head, &r->pending_tail, q);
    q->where = REQ_NOWHERE;
}

/* Runs the caller's callback once; the request stays allocated. */
static void req_complete(req_t *q, int status, const redisReply *reply, const char *error)
{
    if (q->done)
        return;
    q->done = true;
    q->fn(status, reply, error ? error : "", q->ud);
}

static void defer_failure(jn_redis_t *r, req_t *q, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Queues a failure to be reported from the idle callback: a caller never sees
 * its callback run inside the call that started the command. */
static void defer_failure(jn_redis_t *r, req_t *q, int status, const char *fmt, ...)
{
    va_list ap;

    q->dstatus = status;
    q->derror = malloc(ERROR_MAX);
    if (q->derror != NULL) {
        va_start(ap, fmt);
        vsnprintf(q->derror, ERROR_MAX, fmt, ap);
        va_end(ap);
    }
    q->dnext = NULL;
    if (r->deferred_tail)
        r->deferred_tail->dnext = q;
    else
        r->deferred_head = q;
    r->deferred_tail = q;
    uv_idle_start(&r->idle, on_idle);
}

/* ---- the libuv adapter ----
 *
 * Debian's hiredis 0.14 ships adapters/libuv.h, but its poll callback returns
 * on any non-zero status. libuv reports a socket error (a refused connect) as
 * status UV_EBADF with no events, so that adapter never tells hiredis and the
 * connect hangs until something else gives up. This copy hands the error to
 * hiredis as the events it was waiting for; hiredis then finds the socket
 * error itself (later hiredis releases do the same). It also tracks the watcher
 * as a handle of the client, which must outlive it. */

/* Writes what hiredis holds for the connection, now. */
static void conn_flush(conn_t *c)
{
    c->write_pending = false;
    c->flushing = true;
    redisAsyncHandleWrite(c->ac);
    c->flushing = false; /* c lives on until its watcher has closed */
}

static void conn_poll_cb(uv_poll_t *h, int status, int events)
{
    conn_t *c = h->data;
    int ev = status < 0 ? c->events : events;

    if (c->ac != NULL && (ev & UV_READABLE)) {
        c->in_read = true;
        redisAsyncHandleRead(c->ac);
        c->in_read = false;
    }
    /* The commands the reply callbacks sent go out in one write, in this
     * turn of the loop. */
    if (c->ac != NULL && ((ev & UV_WRITABLE) || c->write_pending))
        conn_flush(c);
}

static void on_flush(uv_prepare_t *h)
{
    jn_redis_t *r = h->data;
    conn_t *c = r->conn;

    uv_prepare_stop(h);
    if (c != NULL && c->ac != NULL && c->write_pending)
        conn_flush(c);
}

/* uv_poll_start takes the descriptor out of epoll and puts it back (two
 * epoll_ctl calls) even for the events it already watches: only a change
 * goes to libuv. */
static void conn_update(conn_t *c, int add, int del)
{
    int events = (c->events | add) & ~del;

    if (events == c->events)
        return;
    c->events = events;
    if (c->events)
        uv_poll_start(&c->poll, c->events, conn_poll_cb);
    else
        uv_poll_stop(&c->poll);
}

static void ev_add_read(void *p)
{
    conn_update(p, UV_READABLE, 0);
}

static void ev_del_read(void *p)
{
    conn_update(p, 0, UV_READABLE);
}

/* hiredis asks for a writable event after every command it buffers. Once
 * connected, the socket nearly always has room: the command is written
 * without waiting for one (which would cost the loop a turn and the watcher
 * two changes per command). From a reply callback the write happens when
 * hiredis has run them all (conn_poll_cb, one write for all of them);
 * otherwise just before the loop polls (on_flush), so a caller's call never
 * runs hiredis's write nor the failure callbacks a broken socket brings. The
 * watcher waits for room only when a write was left unfinished (conn_flush),
 * and for the non-blocking connect. */
static void ev_add_write(void *p)
{
    conn_t *c = p;

    if (c->flushing || c->ac == NULL || !(c->ac->c.flags & REDIS_CONNECTED) || c != c->r->conn) {
        conn_update(c, UV_WRITABLE, 0);
        return;
    }
    c->write_pending = true;
    if (!c->in_read)
        uv_prepare_start(&c->r->flush, on_flush);
}

static void ev_del_write(void *p)
{
    conn_t *c = p;

    c->write_pending = false;
    conn_update(c, 0, UV_WRITABLE);
}

static void conn_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    jn_redis_t *r = c->r;

    free(c);
    r->open_handles--;
    maybe_free(r);
}

/* hiredis is releasing the context: stop watching and free once libuv has. */
static void ev_cleanup(void *p)
{
    conn_t *c = p;

    c->ac = NULL;
    uv_close((uv_handle_t *)&c->poll, conn_closed);
}

/* ---- connection ---- */

static void schedule_reconnect(jn_redis_t *r)
{
    long delay;
    uint32_t rnd = 0;

    if (r->backoff_ms == 0)
        r->backoff_ms = r->reconnect_min_ms;
    else if (r->backoff_ms < r->reconnect_max_ms / 2)
        r->backoff_ms *= 2;
    else
        r->backoff_ms = r->reconnect_max_ms;
    /* Half fixed, half random: processes that lost Redis together do not all
     * come back in the same millisecond. */
    if (jn_random_bytes(&rnd, sizeof rnd) != 0)
        rnd = (uint32_t)uv_now(r->loop);
    delay = r->backoff_ms / 2 + (long)(rnd % (uint32_t)(r->backoff_ms / 2 + 1));
    r->attempting = false;
    uv_timer_start(&r->conn_timer, on_conn_timer, (uint64_t)delay, 0);
}

static void fail_queue(jn_redis_t *r, int status, const char *error)
{
    req_t *q;

    while ((q = r->queue_head) != NULL) {
        req_unlink(q);
        req_complete(q, status, NULL, error);
        req_free(q);
    }
}

/* The current connection (or attempt) failed: detach it, record why, go down
 * and schedule the next attempt. `free_ac` is false when hiredis is already
 * releasing the context (it must not be freed twice). */
static void conn_detach(jn_redis_t *r, conn_t *c, bool free_ac, const char *fmt, ...)
{
    char msg[MSG_MAX], error[ERROR_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c != NULL) {
        if (c != r->conn)
            return;
        snprintf(c->why, sizeof c->why, "%s", msg);
        r->conn = NULL;
    }
    if (r->dns != NULL) {
        uv_cancel((uv_req_t *)&r->dns->req);
        r->dns = NULL; /* its callback sees it is stale */
    }
    if (!r->closing) {
        snprintf(r->status.last_error, sizeof r->status.last_error, "%s", msg);
        r->status.failures++;
        set_state(r, JN_REDIS_DOWN);
        snprintf(error, sizeof error, "%s: down (%s)", r->name, msg);
        fail_queue(r, JN_REDIS_EDOWN, error);
        schedule_reconnect(r);
    }
    if (c != NULL && free_ac && c->ac != NULL)
        redisAsyncFree(c->ac); /* deferred by hiredis when inside one of its callbacks */
}

static void conn_ready(jn_redis_t *r, conn_t *c)
{
    c->ready = true;
    r->attempting = false;
    r->backoff_ms = 0;
    uv_timer_stop(&r->conn_timer);
    r->status.connects++;
    set_state(r, JN_REDIS_CONNECTED);
}

static void on_handshake(redisAsyncContext *ac, void *reply_, void *step)
{
    redisReply *reply = reply_;
    conn_t *c = ac->data;
    jn_redis_t *r = c->r;

    if (c != r->conn)
        return;
    if (reply == NULL) {
        conn_detach(r, c, false, "connection lost during the handshake: %s",
                    ac->errstr ? ac->errstr : "closed");
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        /* Redis's own AUTH and SELECT errors never repeat the arguments. */
        conn_detach(r, c, true, "%s failed: %.*s", (const char *)step,
                    (int)(reply->len > 160 ? 160 : reply->len), reply->str);
        return;
    }
    if (--c->handshake_left == 0)
        conn_ready(r, c);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    conn_t *c = ac->data;
    jn_redis_t *r = c->r;

    if (status != REDIS_OK) {
        /* hiredis frees the context right after this returns. */
        conn_detach(r, c, false, "connect failed: %s", ac->errstr ? ac->errstr : "error");
        return;
    }
    if (!r->url.is_unix)
        redisEnableKeepAlive((redisContext *)&ac->c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    conn_t *c = ac->data;

    (void)status;
    conn_detach(c->r, c, false, "connection lost: %s",
                ac->errstr && ac->errstr[0] ? ac->errstr : "closed by the server");
}

static void on_reply(redisAsyncContext *ac, void *reply_, void *privdata);

/* Hands a request to hiredis on the current connection. */
static int req_send(jn_redis_t *r, req_t *q)
{
    if (redisAsyncFormattedCommand(r->conn->ac, on_reply, q, q->cmd, q->cmdlen) != REDIS_OK)
        return -1;
    q->conn = r->conn;
    q->sent = uv_now(r->loop);
    if (q->script == NULL) {
        free(q->cmd);
        q->cmd = NULL;
    }
    list_append(&r->pending_head, &r->pending_tail, q);
    q->where = REQ_PENDING;
    arm_cmd_timer(r, q->deadline);
    return 0;
}

static void create_conn(jn_redis_t *r, const char *ip)
{
    redisAsyncContext *ac;
    conn_t *c;
    const char *argv[3];
    size_t argvlen[3];
    char dbbuf[16];
    req_t *q;

    ac = r->url.is_unix ? redisAsyncConnectUnix(r->url.path) : redisAsyncConnect(ip, r->url.port);
    if (ac == NULL) {
        conn_detach(r, NULL, false, "connect failed: out of memory");
        return;
    }
    if (ac->err) {
        conn_detach(r, NULL, false, "connect failed: %s", ac->errstr);
        redisAsyncFree(ac);
        return;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL || uv_poll_init(r->loop, &c->poll, ac->c.fd) != 0) {
        free(c);
        redisAsyncFree(ac);
        conn_detach(r, NULL, false, "connect failed: cannot watch the socket");
        return;
    }
    r->open_handles++;
    c->r = r;
    c->ac = ac;
    c->poll.data = c;
    ac->data = c;
    ac->ev.data = c;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->conn = c;

    /* The handshake goes first on the pipeline; commands queued meanwhile
     * follow it. PING proves a Redis answers (a socket that accepts and never
     * replies must not count as connected). */
    if (r->url.password != NULL) {
        int n = 0;

        argv[n] = "AUTH";
        argvlen[n++] = 4;
        if (r->url.user[0]) {
            argv[n] = r->url.user;
            argvlen[n++] = strlen(r->url.user);
        }
        argv[n] = r->url.password;
        argvlen[n++] = r->url.password_len;
        redisAsyncCommandArgv(ac, on_handshake, (void *)"AUTH", n, argv, argvlen);
        c->handshake_left++;
    }
    if (r->url.db != 0) {
        snprintf(dbbuf, sizeof dbbuf, "%d", r->url.db);
        argv[0] = "SELECT";
        argvlen[0] = 6;
        argv[1] = dbbuf;
        argvlen[1] = strlen(dbbuf);
        redisAsyncCommandArgv(ac, on_handshake, (void *)"SELECT", 2, argv, argvlen);
        c->handshake_left++;
    }
    argv[0] = "PING";
    argvlen[0] = 4;
    redisAsyncCommandArgv(ac, on_handshake, (void *)"PING", 1, argv, argvlen);
    c->handshake_left++;

    while ((q = r->queue_head) != NULL) {
        req_unlink(q);
        if (req_send(r, q) != 0) {
            req_complete(q, JN_REDIS_EDOWN, NULL, "redis connection is closing");
            req_free(q);
        }
    }
    for (chan_t *ch = r->chans; ch; ch = ch->next)
        chan_update(ch);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    dns_t *d = req->data;
    jn_redis_t *r = d->r;
    char ip[INET6_ADDRSTRLEN] = "";
    const struct addrinfo *pick = NULL;

    r->open_handles--;
    if (d != r->dns || r->closing) {
        uv_freeaddrinfo(res);
        free(d);
        maybe_free(r);
        return;
    }
    r->dns = NULL;
    free(d);
    if (status != 0) {
        uv_freeaddrinfo(res);
        conn_detach(r, NULL, false, "cannot resolve %s: %s", r->url.host, uv_strerror(status));
        return;
    }
    /* IPv4 first, as hiredis itself prefers. */
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET && pick == NULL)
            pick = ai;
    }
    for (const struct addrinfo *ai = res; ai && pick == NULL; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET6)
            pick = ai;
    }
    if (pick != NULL && pick->ai_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)pick->ai_addr)->sin_addr, ip, sizeof ip);
    else if (pick != NULL)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)pick->ai_addr)->sin6_addr, ip,
                  sizeof ip);
    uv_freeaddrinfo(res);
    if (ip[0] == '\0') {
        conn_detach(r, NULL, false, "cannot resolve %s: no IPv4 or IPv6 address", r->url.host);
        return;
    }
    create_conn(r, ip);
}

static bool host_is_numeric(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static void start_connect(jn_redis_t *r)
{
    struct addrinfo hints;
    dns_t *d;
    int rc;

    r->attempting = true;
    uv_timer_start(&r->conn_timer, on_conn_timer, (uint64_t)r->connect_timeout_ms, 0);
    if (r->url.is_unix || host_is_numeric(r->url.host)) {
        create_conn(r, r->url.host);
        return;
    }
    /* Name resolution runs on libuv's thread pool: a slow resolver must not
     * hold the loop. */
    d = calloc(1, sizeof *d);
    if (d == NULL) {
        conn_detach(r, NULL, false, "cannot resolve %s: out of memory", r->url.host);
        return;
    }
    d->r = r;
    d->req.data = d;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = uv_getaddrinfo(r->loop, &d->req, on_resolved, r->url.host, NULL, &hints);
    if (rc != 0) {
        free(d);
        conn_detach(r, NULL, false, "cannot resolve %s: %s", r->url.host, uv_strerror(rc));
        return;
    }
    r->dns = d;
    r->open_handles++;
}

static void on_conn_timer(uv_timer_t *t)
{
    jn_redis_t *r = t->data;

    if (!r->attempting) {
        start_connect(r);
        return;
    }
    if (r->conn != NULL)
        conn_detach(r, r->conn, true, "connect timed out after %ld ms", r->connect_timeout_ms);
    else
        conn_detach(r, NULL, false, "connect timed out after %ld ms (resolving %s)",
                    r->connect_timeout_ms, r->url.host);
}

/* ---- commands ---- */

static void on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    redisReply *reply = reply_;
    req_t *q = privdata;
    conn_t *c = ac->data;
    jn_redis_t *r = c->r;
    char error[ERROR_MAX];

    if (q->where != REQ_NOWHERE)
        req_unlink(q);
    if (reply == NULL) {
        if (c == r->conn)
            conn_detach(r, c, false, "connection lost: %s",
                        ac->errstr && ac->errstr[0] ? ac->errstr : "closed");
        if (r->closing)
            snprintf(error, sizeof error, "%s: client closed", r->name);
        else if (c->ready)
            snprintf(error, sizeof error, "%s: no reply (%s)", r->name, c->why);
        else
            snprintf(error, sizeof error, "%s: down (%s)", r->name, c->why);
        req_complete(
            q, r->closing ? JN_REDIS_ECLOSED : (c->ready ? JN_REDIS_EDISCONNECTED : JN_REDIS_EDOWN),
            NULL, error);
        req_free(q);
        return;
    }
    if (q->script != NULL && !q->done && reply->type == REDIS_REPLY_ERROR &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        if (q->attempt == 0 && c == r->conn && !r->closing) {
            jn_redis_script_t *s = q->script;
            const char *argv[3] = {"SCRIPT", "LOAD", s->source};
            size_t argvlen[3] = {6, 4, s->len};

            /* Load, then the same EVALSHA again, pipelined: one round trip. */
            q->attempt = 1;
            if (redisAsyncCommandArgv(ac, NULL, NULL, 3, argv, argvlen) == REDIS_OK &&
                redisAsyncFormattedCommand(ac, on_reply, q, q->cmd, q->cmdlen) == REDIS_OK) {
                q->sent = uv_now(r->loop);
                list_append(&r->pending_head, &r->pending_tail, q);
                q->where = REQ_PENDING;
                arm_cmd_timer(r, q->deadline);
                return;
            }
        }
        snprintf(error, sizeof error, "%s: script %.12s could not be loaded: %.*s", r->name,
                 q->script->sha, (int)(reply->len > 160 ? 160 : reply->len), reply->str);
        req_complete(q, JN_REDIS_EREPLY, reply, error);
        req_free(q);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR)
        req_complete(q, JN_REDIS_EREPLY, reply, reply->str);
    else
        req_complete(q, JN_REDIS_OK, reply, "");
    req_free(q);
}

static bool refused_command(const char *name, size_t len, const char *second, size_t len2)
{
    for (int i = 0; refused_commands[i]; i++) {
        if (strlen(refused_commands[i]) == len && strncasecmp(refused_commands[i], name, len) == 0)
            return true;
    }
    /* CLIENT REPLY OFF|SKIP would leave callbacks without replies. */
    return len == 6 && strncasecmp(name, "client", 6) == 0 && second != NULL && len2 == 5 &&
           strncasecmp(second, "reply", 5) == 0;
}

static req_t *req_new(jn_redis_t *r, long timeout_ms, jn_redis_reply_fn fn, void *ud)
{
    req_t *q = calloc(1, sizeof *q);

    if (q == NULL)
        return NULL;
    q->r = r;
    q->fn = fn;
    q->ud = ud;
    q->timeout_ms = timeout_ms > 0 ? timeout_ms : r->command_timeout_ms;
    /* The loop's cached time can be far behind when the caller has been
     * busy since the loop last woke: the deadline counts from now. */
    uv_update_time(r->loop);
    q->deadline = uv_now(r->loop) + (uint64_t)q->timeout_ms;
    return q;
}

/* Sends, queues or defers a formatted request according to the state. */
static int req_submit(jn_redis_t *r, req_t *q)
{
    switch (r->status.state) {
    case JN_REDIS_CONNECTED:
    case JN_REDIS_CONNECTING:
        if (r->conn == NULL) {
            list_append(&r->queue_head, &r->queue_tail, q);
            q->where = REQ_QUEUED;
            arm_cmd_timer(r, q->deadline);
            return 0;
        }
        if (req_send(r, q) == 0)
            return 0;
        defer_failure(r, q, JN_REDIS_EDOWN, "%s: down (the connection is closing)", r->name);
        return 0;
    case JN_REDIS_DOWN:
        defer_failure(r, q, JN_REDIS_EDOWN, "%s: down (%s)", r->name, r->status.last_error);
        return 0;
    case JN_REDIS_CLOSED:
        break;
    }
    req_free(q);
    return JN_REDIS_ECLOSED;
}

static int check_mode(jn_redis_t *r, client_mode_t want)
{
    if (r->mode != MODE_UNSET && r->mode != want)
        return -1;
    r->mode = want;
    return 0;
}

int jn_redis_command(jn_redis_t *r, long timeout_ms, int argc, const char *const *argv,
                     const size_t *argvlen, jn_redis_reply_fn fn, void *ud)
{
    req_t *q;
    char *cmd = NULL;
    int len;

    if (r == NULL || fn == NULL || argc < 1 || argv == NULL || timeout_ms < 0)
        return JN_REDIS_EINVAL;
    for (int i = 0; i < argc; i++) {
        if (argv[i] == NULL)
            return JN_REDIS_EINVAL;
    }
    if (r->closing)
        return JN_REDIS_ECLOSED;
    if (refused_command(argv[0], argvlen ? argvlen[0] : strlen(argv[0]), argc > 1 ? argv[1] : NULL,
                        argc > 1 ? (argvlen ? argvlen[1] : strlen(argv[1])) : 0))
        return JN_REDIS_EINVAL;
    if (check_mode(r, MODE_COMMANDS) != 0)
        return JN_REDIS_EINVAL;
    q = req_new(r, timeout_ms, fn, ud);
    if (q == NULL)
        return JN_REDIS_ENOMEM;
    len = redisFormatCommandArgv(&cmd, argc, (const char **)argv, argvlen);
    if (len < 0) {
        free(q);
        return JN_REDIS_ENOMEM;
    }
    q->cmd = cmd;
    q->cmdlen = (size_t)len;
    return req_submit(r, q);
}

/* ---- timeouts ---- */

static void arm_cmd_timer(jn_redis_t *r, uint64_t deadline)
{
    uint64_t now = uv_now(r->loop);

    if (r->closing)
        return;
    if (uv_is_active((uv_handle_t *)&r->cmd_timer) && r->cmd_timer_due <= deadline)
        return;
    r->cmd_timer_due = deadline;
    uv_timer_start(&r->cmd_timer, on_cmd_timer, deadline > now ? deadline - now : 0, 0);
}

static req_t *first_expired(req_t *head, uint64_t now)
{
    for (req_t *q = head; q; q = q->next) {
        if (!q->done && q->deadline <= now)
            return q;
    }
    return NULL;
}

/* When the current connection counts as stalled: its oldest unanswered
 * command (timed out or not; replies come in order) has waited longer than
 * the client's command timeout, or than its own when that is longer (a
 * blocking command). UINT64_MAX when nothing is owed. */
static uint64_t stall_due(const jn_redis_t *r, long *allowed_ms)
{
    const req_t *head = r->pending_head;
    long allowed;

    if (r->conn == NULL || !r->conn->ready || head == NULL || head->conn != r->conn)
        return UINT64_MAX;
    allowed = head->timeout_ms > r->command_timeout_ms ? head->timeout_ms : r->command_timeout_ms;
    if (allowed_ms != NULL)
        *allowed_ms = allowed;
    return head->sent + (uint64_t)allowed;
}

static void on_cmd_timer(uv_timer_t *t)
{
    jn_redis_t *r = t->data;
    uint64_t now = uv_now(r->loop), next, due;
    bool stalled = false;
    long stalled_ms = r->command_timeout_ms;
    char error[ERROR_MAX];
    req_t *q;

    /* One at a time, from the head again after each callback: a callback may
     * close the client or start commands. */
    while (!r->closing && (q = first_expired(r->queue_head, now)) != NULL) {
        req_unlink(q);
        snprintf(error, sizeof error, "%s: no connection within %ld ms", r->name, q->timeout_ms);
        req_complete(q, JN_REDIS_ETIMEDOUT, NULL, error);
        req_free(q);
    }
    /* A timed-out command stays in the list until its reply (or the end of
     * its connection) comes: it still marks the place in the pipeline. */
    while (!r->closing && (q = first_expired(r->pending_head, now)) != NULL) {
        snprintf(error, sizeof error, "%s: no reply within %ld ms", r->name, q->timeout_ms);
        req_complete(q, JN_REDIS_ETIMEDOUT, NULL, error);
    }
    if (r->closing)
        return;
    /* Rather than let every command behind a stalled one wait out its own
     * timeout, drop the connection: they fail now, and the client is down
     * (failing fast) until a new connection answers. */
    if (stall_due(r, &stalled_ms) <= now)
        stalled = true;
    for (chan_t *ch = r->chans; ch; ch = ch->next) {
        if ((ch->state == CHAN_SUBSCRIBING || ch->state == CHAN_UNSUBSCRIBING) &&
            ch->deadline <= now && r->conn != NULL && ch->conn == r->conn)
            stalled = true;
    }
    if (stalled)
        conn_detach(r, r->conn, true, "connection dropped: no reply within %ld ms", stalled_ms);
    if (r->closing)
        return;
    next = stall_due(r, NULL);
    for (q = r->queue_head; q; q = q->next)
        next = q->deadline < next ? q->deadline : next;
    for (q = r->pending_head; q; q = q->next) {
        if (!q->done)
            next = q->deadline < next ? q->deadline : next;
    }
    for (chan_t *ch = r->chans; ch; ch = ch->next) {
        if (ch->state == CHAN_SUBSCRIBING || ch->state == CHAN_UNSUBSCRIBING)
            next = ch->deadline < next ? ch->deadline : next;
    }
    due = next;
    if (due != UINT64_MAX)
        arm_cmd_timer(r, due);
}

/* ---- deferred callbacks ---- */

static void on_idle(uv_idle_t *h)
{
    jn_redis_t *r = h->data;
    req_t *q;

    while ((q = r->deferred_head) != NULL) {
        r->deferred_head = q->dnext;
        if (r->deferred_head == NULL)
            r->deferred_tail = NULL;
        req_complete(q, q->dstatus, NULL, q->derror);
        req_free(q);
    }
    if (r->ready_scan && !r->closing) {
        r->ready_scan = false;
        for (chan_t *ch = r->chans; ch && !r->closing; ch = ch->next) {
            if (ch->state != CHAN_SUBSCRIBED)
                continue;
            ch->dispatching++;
            for (jn_redis_sub_t *s = ch->subs; s && !r->closing; s = s->next) {
                if (!s->dead && !s->ready) {
                    s->ready = true;
                    s->fn(s, JN_REDIS_SUB_READY, NULL, 0, s->ud);
                }
            }
            ch->dispatching--;
        }
        for (chan_t *ch = r->chans, *next; ch; ch = next) {
            next = ch->next;
            chan_maybe_free(ch);
        }
    }
    if (r->deferred_head == NULL && !r->ready_scan)
        uv_idle_stop(&r->idle);
}

/* ---- client ---- */

void jn_redis_opts_init(jn_redis_opts_t *opts)
{
    memset(opts, 0, sizeof *opts);
}

jn_redis_t *jn_redis_create(uv_loop_t *loop, const char *url, const jn_redis_opts_t *opts,
                            char *err, size_t errlen)
{
    jn_redis_opts_t o;
    jn_redis_t *r;

    if (opts == NULL)
        jn_redis_opts_init(&o);
    else
        o = *opts;
    if (loop == NULL) {
        jn_errorf(err, errlen, "redis: no loop");
        return NULL;
    }
    if (o.connect_timeout_ms < 0 || o.command_timeout_ms < 0 || o.reconnect_min_ms < 0 ||
        o.reconnect_max_ms < 0) {
        jn_errorf(err, errlen, "redis: timeouts and reconnect delays must not be negative");
        return NULL;
    }
    r = calloc(1, sizeof *r);
    if (r == NULL) {
        jn_errorf(err, errlen, "redis: out of memory");
        return NULL;
    }
    if (jn_redis_url_parse(url, &r->url, err, errlen) != 0) {
        free(r);
        return NULL;
    }
    r->connect_timeout_ms =
        o.connect_timeout_ms ? o.connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    r->command_timeout_ms =
        o.command_timeout_ms ? o.command_timeout_ms : DEFAULT_COMMAND_TIMEOUT_MS;
    r->reconnect_min_ms = o.reconnect_min_ms ? o.reconnect_min_ms : DEFAULT_RECONNECT_MIN_MS;
    r->reconnect_max_ms = o.reconnect_max_ms ? o.reconnect_max_ms : DEFAULT_RECONNECT_MAX_MS;
    if (o.reconnect_max_ms == 0 && r->reconnect_max_ms < r->reconnect_min_ms)
        r->reconnect_max_ms = r->reconnect_min_ms;
    if (r->reconnect_max_ms < r->reconnect_min_ms) {
        jn_redis_url_clear(&r->url);
        free(r);
        jn_errorf(err, errlen, "redis: reconnect_max_ms (%ld) is below reconnect_min_ms (%ld)",
                  o.reconnect_max_ms, o.reconnect_min_ms);
        return NULL;
    }
    if (r->url.is_unix)
        snprintf(r->name, sizeof r->name, "redis unix:%s", r->url.path);
    else if (strchr(r->url.host, ':') != NULL)
        snprintf(r->name, sizeof r->name, "redis [%s]:%d", r->url.host, r->url.port);
    else
        snprintf(r->name, sizeof r->name, "redis %s:%d", r->url.host, r->url.port);
    r->loop = loop;
    r->status.state = JN_REDIS_CONNECTING;
    r->status.since_ms = jn_now_ms();
    uv_timer_init(loop, &r->conn_timer);
    uv_timer_init(loop, &r->cmd_timer);
    uv_idle_init(loop, &r->idle);
    uv_prepare_init(loop, &r->flush);
    r->conn_timer.data = r;
    r->cmd_timer.data = r;
    r->idle.data = r;
    r->flush.data = r;
    r->open_handles = 4;
    start_connect(r);
    return r;
}

void jn_redis_status(const jn_redis_t *r, jn_redis_status_t *out)
{
    *out = r->status;
}

const char *jn_redis_name(const jn_redis_t *r)
{
    return r->name;
}

uv_loop_t *jn_redis_loop(const jn_redis_t *r)
{
    return r->loop;
}

void jn_redis_hold(jn_redis_t *r)
{
    r->holds++;
}

void jn_redis_release(jn_redis_t *r)
{
    r->holds--;
    maybe_free(r);
}

void jn_redis_close(jn_redis_t *r)
{
    char error[ERROR_MAX];
    conn_t *c;
    req_t *q;

    if (r == NULL || r->closing)
        return;
    r->closing = true;
    set_state(r, JN_REDIS_CLOSED);
    snprintf(error, sizeof error, "%s: client closed", r->name);

    /* Callbacks cannot start anything now (every entry point checks
     * `closing`), so these loops only ever see requests going away. */
    while ((q = r->pending_head) != NULL) {
        req_unlink(q);
        req_complete(q, JN_REDIS_ECLOSED, NULL, error);
    }
    while ((q = r->queue_head) != NULL) {
        req_unlink(q);
        req_complete(q, JN_REDIS_ECLOSED, NULL, error);
        req_free(q);
    }
    while ((q = r->deferred_head) != NULL) {
        r->deferred_head = q->dnext;
        req_complete(q, JN_REDIS_ECLOSED, NULL, error);
        req_free(q);
    }
    r->deferred_tail = NULL;
    for (chan_t *ch = r->chans; ch; ch = ch->next) {
        ch->dispatching++;
        for (jn_redis_sub_t *s = ch->subs; s; s = s->next) {
            if (s->dead)
                continue;
            s->dead = true;
            ch->nsubs--;
            s->fn(s, JN_REDIS_SUB_CLOSED, NULL, 0, s->ud);
        }
        ch->dispatching--;
    }

    c = r->conn;
    r->conn = NULL;
    if (r->dns != NULL) {
        uv_cancel((uv_req_t *)&r->dns->req);
        r->dns = NULL;
    }
    if (c != NULL && c->ac != NULL) {
        snprintf(c->why, sizeof c->why, "client closed");
        redisAsyncFree(c->ac); /* releases the channels it holds */
    }
    for (chan_t *ch = r->chans, *next; ch; ch = next) {
        next = ch->next;
        chan_maybe_free(ch);
    }
    uv_close((uv_handle_t *)&r->conn_timer, handle_closed);
    uv_close((uv_handle_t *)&r->cmd_timer, handle_closed);
    uv_close((uv_handle_t *)&r->idle, handle_closed);
    uv_close((uv_handle_t *)&r->flush, handle_closed);
}

/* ---- scripts ---- */

jn_redis_script_t *jn_redis_script_register(jn_redis_t *r, const char *source, char *err,
                                            size_t errlen)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    jn_redis_script_t *s;
    char sha[41];
    size_t len;

    if (r == NULL || source == NULL || source[0] == '\0') {
        jn_errorf(err, errlen, "redis script: empty source");
        return NULL;
    }
    /* The same pointer is the usual case (a static source); the comparison
     * guards against a freed buffer whose address came back with other text. */
    for (s = r->scripts; s; s = s->next) {
        if (s->given == source && strcmp(s->source, source) == 0)
            return s;
    }
    len = strlen(source);
    if (EVP_Digest(source, len, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20) {
        jn_errorf(err, errlen, "redis script: SHA1 failed");
        return NULL;
    }
    jn_hex_encode(md, 20, sha);
    for (s = r->scripts; s; s = s->next) {
        if (strcmp(s->sha, sha) == 0)
            return s;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL || (s->source = malloc(len + 1)) == NULL) {
        free(s);
        jn_errorf(err, errlen, "redis script: out of memory");
        return NULL;
    }
    memcpy(s->source, source, len + 1);
    s->len = len;
    s->given = source;
    memcpy(s->sha, sha, sizeof sha);
    s->next = r->scripts;
    r->scripts = s;
    return s;
}

const char *jn_redis_script_sha(const jn_redis_script_t *s)
{
    return s->sha;
}

int jn_redis_script_run(jn_redis_t *r, jn_redis_script_t *s, long timeout_ms, int nkeys, int argc,
                        const char *const *argv, const size_t *argvlen, jn_redis_reply_fn fn,
                        void *ud)
{
    const char *args_buf[16], **args = args_buf;
    size_t lens_buf[16], *lens = lens_buf;
    char nkeys_buf[16];
    char *cmd = NULL;
    req_t *q;
    int len;

    if (r == NULL || s == NULL || fn == NULL || nkeys < 0 || argc < nkeys || argc > 100000 ||
        (argc > 0 && argv == NULL) || timeout_ms < 0)
        return JN_REDIS_EINVAL;
    for (int i = 0; i < argc; i++) {
        if (argv[i] == NULL)
            return JN_REDIS_EINVAL;
    }
    if (r->closing)
        return JN_REDIS_ECLOSED;
    if (check_mode(r, MODE_COMMANDS) != 0)
        return JN_REDIS_EINVAL;
    /* The usual script has a few arguments: no allocation for them. */
    if (argc + 3 > 16) {
        args = malloc(sizeof *args * (size_t)(argc + 3));
        lens = malloc(sizeof *lens * (size_t)(argc + 3));
    }
    q = req_new(r, timeout_ms, fn, ud);
    if (args == NULL || lens == NULL || q == NULL)
        goto oom;
    snprintf(nkeys_buf, sizeof nkeys_buf, "%d", nkeys);
    args[0] = "EVALSHA";
    lens[0] = 7;
    args[1] = s->sha;
    lens[1] = 40;
    args[2] = nkeys_buf;
    lens[2] = strlen(nkeys_buf);
    for (int i = 0; i < argc; i++) {
        args[i + 3] = argv[i];
        lens[i + 3] = argvlen ? argvlen[i] : strlen(argv[i]);
    }
    len = redisFormatCommandArgv(&cmd, argc + 3, args, lens);
    if (len < 0)
        goto oom;
    if (args != args_buf) {
        free(args);
        free(lens);
    }
    q->cmd = cmd;
    q->cmdlen = (size_t)len;
    q->script = s;
    return req_submit(r, q);

oom:
    if (args != args_buf) {
        free(args);
        free(lens);
    }
    free(q);
    return JN_REDIS_ENOMEM;
}

/* ---- pub/sub ---- */

static void chan_dispatch(chan_t *ch, jn_redis_sub_event_t ev, const char *data, size_t len)
{
    ch->dispatching++;
    for (jn_redis_sub_t *s = ch->subs; s; s = s->next) {
        if (s->dead)
            continue;
        if (ev == JN_REDIS_SUB_READY) {
            if (s->ready)
                continue;
            s->ready = true;
        } else if (ev == JN_REDIS_SUB_LOST) {
            if (!s->ready)
                continue;
            s->ready = false;
        }
        s->fn(s, ev, data, len, s->ud);
    }
    ch->dispatching--;
}

/* Frees subscriptions ended during a dispatch, then the channel itself when
 * nothing holds it any more. */
static void chan_maybe_free(chan_t *ch)
{
    jn_redis_t *r = ch->r;
    jn_redis_sub_t *s, *next;

    if (ch->dispatching > 0)
        return;
    for (s = ch->subs; s; s = next) {
        next = s->next;
        if (!s->dead)
            continue;
        if (s->prev)
            s->prev->next = s->next;
        else
            ch->subs = s->next;
        if (s->next)
            s->next->prev = s->prev;
        free(s);
    }
    if (ch->nsubs > 0 || ch->state != CHAN_IDLE)
        return;
    if (ch->prev)
        ch->prev->next = ch->next;
    else
        r->chans = ch->next;
    if (ch->next)
        ch->next->prev = ch->prev;
    free(ch->name);
    free(ch);
}

static void on_chan_reply(redisAsyncContext *ac, void *reply_, void *privdata);

static void chan_send(chan_t *ch, const char *verb)
{
    jn_redis_t *r = ch->r;
    const char *argv[2] = {verb, ch->name};
    size_t argvlen[2] = {strlen(verb), ch->len};

    if (redisAsyncCommandArgv(r->conn->ac, on_chan_reply, ch, 2, argv, argvlen) != REDIS_OK)
        return;
    ch->conn = r->conn;
    ch->state = verb[0] == 'S' ? CHAN_SUBSCRIBING : CHAN_UNSUBSCRIBING;
    ch->deadline = uv_now(r->loop) + (uint64_t)r->command_timeout_ms;
    arm_cmd_timer(r, ch->deadline);
}

/* Moves the channel toward what its subscriptions want. One SUBSCRIBE or
 * UNSUBSCRIBE at a time per channel: hiredis 0.14 keys its callbacks by
 * channel name, and a SUBSCRIBE sent while an UNSUBSCRIBE is in flight
 * would have its callback removed by the UNSUBSCRIBE's reply. */
static void chan_update(chan_t *ch)
{
    jn_redis_t *r = ch->r;
    bool want = ch->nsubs > 0;

    if (r->closing)
        return;
    if (ch->state == CHAN_IDLE && want && r->conn != NULL && r->conn->ac != NULL)
        chan_send(ch, "SUBSCRIBE");
    else if (ch->state == CHAN_SUBSCRIBED && !want && ch->conn == r->conn && r->conn != NULL)
        chan_send(ch, "UNSUBSCRIBE");
}

static void on_chan_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    redisReply *reply = reply_;
    chan_t *ch = privdata;
    conn_t *c = ac->data;
    jn_redis_t *r = c->r;
    const char *kind;

    if (reply == NULL) {
        /* The connection is going: hiredis forgets the channel. */
        if (c == r->conn)
            conn_detach(r, c, false, "connection lost: %s",
                        ac->errstr && ac->errstr[0] ? ac->errstr : "closed");
        if (ch->conn == c) {
            ch->conn = NULL;
            ch->state = CHAN_IDLE;
        }
        if (!r->closing)
            chan_dispatch(ch, JN_REDIS_SUB_LOST, NULL, 0);
        chan_maybe_free(ch);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    kind = reply->element[0]->str;
    if (strcasecmp(kind, "message") == 0) {
        if (ch->state == CHAN_SUBSCRIBED && reply->element[2]->type == REDIS_REPLY_STRING)
            chan_dispatch(ch, JN_REDIS_SUB_MESSAGE, reply->element[2]->str, reply->element[2]->len);
    } else if (strcasecmp(kind, "subscribe") == 0) {
        ch->state = CHAN_SUBSCRIBED;
        if (ch->nsubs > 0)
            chan_dispatch(ch, JN_REDIS_SUB_READY, NULL, 0);
        chan_update(ch);
    } else if (strcasecmp(kind, "unsubscribe") == 0) {
        /* hiredis has dropped the channel from its table. */
        ch->state = CHAN_IDLE;
        ch->conn = NULL;
        chan_update(ch);
    }
    chan_maybe_free(ch);
}

int jn_redis_subscribe(jn_redis_t *r, const char *channel, size_t channel_len, jn_redis_sub_fn fn,
                       void *ud, jn_redis_sub_t **out)
{
    jn_redis_sub_t *s;
    chan_t *ch;

    if (r == NULL || channel == NULL || channel_len == 0 || fn == NULL || out == NULL)
        return JN_REDIS_EINVAL;
    if (r->closing)
        return JN_REDIS_ECLOSED;
    if (check_mode(r, MODE_SUBSCRIBER) != 0)
        return JN_REDIS_EINVAL;
    for (ch = r->chans; ch; ch = ch->next) {
        if (ch->len == channel_len && memcmp(ch->name, channel, channel_len) == 0)
            break;
    }
    if (ch == NULL) {
        ch = calloc(1, sizeof *ch);
        if (ch == NULL || (ch->name = malloc(channel_len + 1)) == NULL) {
            free(ch);
            return JN_REDIS_ENOMEM;
        }
        memcpy(ch->name, channel, channel_len);
        ch->name[channel_len] = '\0';
        ch->len = channel_len;
        ch->r = r;
        ch->next = r->chans;
        if (r->chans)
            r->chans->prev = ch;
        r->chans = ch;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        chan_maybe_free(ch);
        return JN_REDIS_ENOMEM;
    }
    s->chan = ch;
    s->fn = fn;
    s->ud = ud;
    /* At the head: a dispatch in progress on this channel does not reach it. */
    s->next = ch->subs;
    if (ch->subs)
        ch->subs->prev = s;
    ch->subs = s;
    ch->nsubs++;
    if (ch->state == CHAN_SUBSCRIBED) {
        r->ready_scan = true;
        uv_idle_start(&r->idle, on_idle);
    }
    chan_update(ch);
    *out = s;
    return 0;
}

int jn_redis_sub_ready(const jn_redis_sub_t *sub)
{
    return sub != NULL && !sub->dead && sub->ready;
}

void jn_redis_unsubscribe(jn_redis_sub_t *sub)
{
    chan_t *ch;

    if (sub == NULL || sub->dead)
        return;
    ch = sub->chan;
    sub->dead = true;
    ch->nsubs--;
    chan_update(ch);
    chan_maybe_free(ch);
}
