/* A static 200 on Junction's HTTP server, for tools/bench/httpserver.
 *
 *   httpserver_bench [--listen ADDR]     (default 127.0.0.1:0)
 *
 * One libuv loop (one worker), `GET /` answered "ok" synchronously, no access
 * log and no rate limit (nginx is run the same way). Prints "LISTENING <port>"
 * once ready; SIGTERM or SIGINT shuts it down gracefully.
 */
#include "junction/http_server.h"
#include "junction/log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    jn_http_server_t *srv;
    uv_signal_t sigterm, sigint;
} bench_t;

static void on_root(jn_http_req_t *req, void *ud)
{
    static const jn_http_field_t ct = {"Content-Type", "text/plain"};

    (void)ud;
    jn_http_respond(req, 200, &ct, 1, "ok", 2);
}

static void on_stopped(jn_http_server_t *srv, void *ud)
{
    bench_t *b = ud;

    jn_http_server_destroy(srv);
    uv_close((uv_handle_t *)&b->sigterm, NULL);
    uv_close((uv_handle_t *)&b->sigint, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    bench_t *b = s->data;

    (void)signum;
    uv_signal_stop(&b->sigterm);
    uv_signal_stop(&b->sigint);
    jn_http_server_shutdown(b->srv, 2000, on_stopped, b);
}

int main(int argc, char **argv)
{
    jn_http_server_opts_t opts;
    bench_t b = {0};
    uv_loop_t *loop = uv_default_loop();
    char err[256];

    jn_http_server_opts_init(&opts);
    opts.listen = "127.0.0.1:0";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            opts.listen = argv[++i];
        } else {
            fprintf(stderr, "usage: httpserver_bench [--listen ADDR]\n");
            return 2;
        }
    }
    jn_log_set_level(JN_LOG_WARN);
    opts.access_log = 0;
    opts.rate_per_s = 0;
    opts.max_connections = 100000;
    opts.keepalive_timeout_ms = 600000;
    b.srv = jn_http_server_create(loop, &opts, err, sizeof err);
    if (!b.srv || jn_http_server_route(b.srv, "GET", "/", on_root, NULL, NULL, err, sizeof err) ||
        jn_http_server_listen(b.srv, err, sizeof err)) {
        fprintf(stderr, "httpserver_bench: %s\n", err);
        return 1;
    }
    uv_signal_init(loop, &b.sigterm);
    uv_signal_init(loop, &b.sigint);
    b.sigterm.data = b.sigint.data = &b;
    uv_signal_start(&b.sigterm, on_signal, SIGTERM);
    uv_signal_start(&b.sigint, on_signal, SIGINT);
    printf("LISTENING %d\n", jn_http_server_port(b.srv));
    fflush(stdout);
    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop) == 0 ? 0 : 1;
}
