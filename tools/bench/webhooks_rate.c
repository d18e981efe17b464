/* A constant-rate load generator for tools/bench/webhooks: signed GitHub-style
 * deliveries sent at a fixed rate over keep-alive connections, each latency
 * measured from the request's intended send time (not from when a free
 * connection let it go), so that a stalled server shows up in the
 * percentiles instead of slowing the load down (coordinated omission).
 *
 *   webhooks_rate PORT PATH RATE DURATION_S CONNECTIONS
 *
 * The body and its X-Hub-Signature-256 come from WH_BODY and WH_SIGNATURE;
 * every request has its own X-GitHub-Delivery: a counter, or a random UUID
 * when WH_ID_MODE is "uuid". Request i is due at start +
 * i / RATE; it goes out on an idle connection as soon as it is due (one
 * request per connection at a time, as wrk sends them), or waits for one.
 * Plain C on epoll, one thread, no dependency: it is compiled by the script.
 *
 * Prints one line:
 *   RATE target=<r> achieved=<r> sent=<n> ok=<n> errors=<n> p50_ms=.. p90_ms=..
 *        p99_ms=.. p999_ms=.. max_ms=..
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024
#define INBUF 16384
#define TICK_NS 100000 /* 100 us */

typedef struct {
    int fd;
    int busy;
    uint64_t due_ns; /* intended send time of the request in flight */
    char in[INBUF];
    size_t in_len;
} conn_t;

static conn_t conns[MAX_CONNS];
static int nconns, port;
static struct sockaddr_in addr;
static const char *path, *body, *signature;
static char run_id[32];
static int uuid_ids;
static double *lat_ms;
static uint64_t sent, ok, errors, completed, nlat;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int dial(int epfd, conn_t *c)
{
    struct epoll_event ev = {0};
    int one = 1;

    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        perror("webhooks_rate: connect");
        return -1;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->busy = 0;
    c->in_len = 0;
    ev.events = EPOLLIN;
    ev.data.ptr = c;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static int send_one(conn_t *c, uint64_t due)
{
    char req[8192], id[64];
    int n;

    if (uuid_ids)
        snprintf(id, sizeof(id), "%08x-%04x-4%03x-%04x-%06x%06x", (unsigned)random(),
                 (unsigned)random() & 0xffff, (unsigned)random() & 0xfff,
                 0x8000 | ((unsigned)random() & 0x3fff), (unsigned)random() & 0xffffff,
                 (unsigned)random() & 0xffffff);
    else
        snprintf(id, sizeof(id), "%s-%llu", run_id, (unsigned long long)sent);
    n = snprintf(req, sizeof(req),
                 "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                 "X-Hub-Signature-256: %s\r\nX-GitHub-Event: push\r\n"
                 "X-GitHub-Delivery: %s\r\nContent-Length: %zu\r\n\r\n%s",
                 path, port, signature, id, strlen(body), body);
    ssize_t w = 0;

    if (n <= 0 || (size_t)n >= sizeof(req))
        return -1;
    while (w < n) {
        ssize_t k = write(c->fd, req + w, (size_t)(n - w));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        w += k;
    }
    c->busy = 1;
    c->due_ns = due;
    sent++;
    return 0;
}

/* A complete response in c->in: its length, or 0 when more is needed. */
static size_t response_len(conn_t *c, int *status)
{
    char *end, *cl;
    size_t head, len = 0;

    c->in[c->in_len] = '\0';
    end = strstr(c->in, "\r\n\r\n");
    if (end == NULL)
        return 0;
    head = (size_t)(end - c->in) + 4;
    cl = strcasestr(c->in, "\r\ncontent-length:");
    if (cl != NULL && cl < end)
        len = strtoul(cl + 17, NULL, 10);
    if (c->in_len < head + len)
        return 0;
    *status = atoi(c->in + 9);
    return head + len;
}

static int on_readable(int epfd, conn_t *c)
{
    ssize_t k = read(c->fd, c->in + c->in_len, INBUF - 1 - c->in_len);
    size_t used;
    int status = 0;

    if (k <= 0) {
        /* closed by the server: the request in flight (if any) failed */
        if (c->busy)
            errors++, completed++;
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        return dial(epfd, c);
    }
    c->in_len += (size_t)k;
    while (c->busy && (used = response_len(c, &status)) > 0) {
        lat_ms[nlat++] = (double)(now_ns() - c->due_ns) / 1e6;
        completed++;
        if (status >= 200 && status < 300)
            ok++;
        else
            errors++;
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
        c->busy = 0;
    }
    return 0;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    size_t i = (size_t)(p * (double)(nlat - 1));

    return nlat ? lat_ms[i] : 0;
}

int main(int argc, char **argv)
{
    struct epoll_event evs[MAX_CONNS];
    double rate, duration;
    uint64_t start, total, next_i = 0, end_ns, interval_ns;
    int epfd, idle_hint = 0;

    if (argc != 6) {
        fprintf(stderr, "usage: webhooks_rate PORT PATH RATE DURATION_S CONNECTIONS\n");
        return 2;
    }
    port = atoi(argv[1]);
    path = argv[2];
    rate = atof(argv[3]);
    duration = atof(argv[4]);
    nconns = atoi(argv[5]);
    body = getenv("WH_BODY");
    signature = getenv("WH_SIGNATURE");
    if (port <= 0 || rate <= 0 || duration <= 0 || nconns < 1 || nconns > MAX_CONNS ||
        body == NULL || signature == NULL) {
        fprintf(stderr, "webhooks_rate: bad arguments, or WH_BODY / WH_SIGNATURE not set\n");
        return 2;
    }
    uuid_ids = getenv("WH_ID_MODE") && strcmp(getenv("WH_ID_MODE"), "uuid") == 0;
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());
    signal(SIGPIPE, SIG_IGN);
    snprintf(run_id, sizeof(run_id), "rate-%lx-%x", (long)time(NULL), (unsigned)getpid());
    total = (uint64_t)(rate * duration);
    interval_ns = (uint64_t)(1e9 / rate);
    lat_ms = calloc(total + 1, sizeof(double));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    epfd = epoll_create1(0);
    if (lat_ms == NULL || epfd < 0)
        return 1;
    for (int i = 0; i < nconns; i++)
        if (dial(epfd, &conns[i]) != 0)
            return 1;
    start = now_ns();
    end_ns = start + (uint64_t)(duration * 1e9) + 5000000000ull; /* 5 s to drain */
    while (completed < total && now_ns() < end_ns) {
        uint64_t now = now_ns();
        struct timespec ts = {0, 0};
        int n, starved = 0;

        /* every request that is due goes out on an idle connection */
        while (next_i < total && start + next_i * interval_ns <= now) {
            conn_t *c = NULL;
            for (int k = 0; k < nconns; k++) {
                conn_t *t = &conns[(idle_hint + k) % nconns];
                if (!t->busy) {
                    c = t;
                    idle_hint = (idle_hint + k + 1) % nconns;
                    break;
                }
            }
            if (c == NULL) {
                starved = 1; /* all busy: it waits, its clock already runs */
                break;
            }
            if (send_one(c, start + next_i * interval_ns) != 0) {
                errors++, completed++;
                epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                if (dial(epfd, c) != 0)
                    return 1;
            }
            next_i++;
        }
        /* Sleep until the next request is due (at least TICK_NS: waking for
         * every request would cost more than the requests), or, when every
         * connection is busy, until a response frees one. */
        if (next_i < total && !starved) {
            uint64_t due = start + next_i * interval_ns;
            ts.tv_nsec =
                due <= now + TICK_NS ? TICK_NS : (long)(due - now < 1000000 ? due - now : 1000000);
        } else {
            ts.tv_nsec = 1000000;
        }
        n = epoll_pwait2(epfd, evs, MAX_CONNS, &ts, NULL);
        for (int k = 0; k < n; k++)
            if (on_readable(epfd, evs[k].data.ptr) != 0)
                return 1;
    }
    qsort(lat_ms, nlat, sizeof(double), cmp);
    printf("RATE target=%.0f achieved=%.0f sent=%llu ok=%llu errors=%llu p50_ms=%.3f "
           "p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f\n",
           rate, (double)ok / duration, (unsigned long long)sent, (unsigned long long)ok,
           (unsigned long long)errors, pct(0.50), pct(0.90), pct(0.99), pct(0.999),
           nlat ? lat_ms[nlat - 1] : 0);
    return completed < total ? 1 : 0;
}
