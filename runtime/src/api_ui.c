/* The dashboard (/ui): one page, its script, style sheet and icon, from
 * runtime/ui, compiled into the binary (generated/ui_files.c, written by
 * tools/cmake/embed_files.cmake) so that the runtime serves them with nothing
 * else installed.
 *
 * The page needs no token; the data does: the script asks the operator for a
 * token, keeps it in sessionStorage (gone when the tab closes, never in a
 * cookie or the URL) and polls GET /v1/health every 2 s with
 * `Authorization: Bearer`, so an organization token shows its organization
 * only. Everything the API returns is inserted with textContent, never as
 * HTML. The Content-Security-Policy allows scripts, styles, images and
 * fetches from the runtime itself and nothing else (no inline script or
 * style, no other origin, no framing); there is no CDN and no external font.
 */
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"

/* generated/ui_files.c: NUL-terminated copies of runtime/ui/<file> */
extern const char jn_ui_index_html[];
extern const char jn_ui_app_js[];
extern const char jn_ui_app_css[];
extern const char jn_ui_favicon_svg[];

#define UI_CSP                                                                                     \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "                \
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

static void ui_send(api_req_t *r, const char *type, const char *body)
{
    jn_http_field_t h[] = {{"Content-Type", type},
                           {"Content-Security-Policy", UI_CSP},
                           {"X-Content-Type-Options", "nosniff"},
                           {"X-Frame-Options", "DENY"},
                           {"Referrer-Policy", "no-referrer"},
                           {"Cache-Control", "no-store"}};

    jn_http_respond(r->req, 200, h, sizeof(h) / sizeof(h[0]), body, strlen(body));
    free(r);
}

static void ui_page(api_req_t *r)
{
    ui_send(r, "text/html; charset=utf-8", jn_ui_index_html);
}

static void ui_script(api_req_t *r)
{
    ui_send(r, "text/javascript; charset=utf-8", jn_ui_app_js);
}

static void ui_style(api_req_t *r)
{
    ui_send(r, "text/css; charset=utf-8", jn_ui_app_css);
}

static void ui_icon(api_req_t *r)
{
    ui_send(r, "image/svg+xml", jn_ui_favicon_svg);
}

const api_route_t api_ui_routes[] = {
    {"GET", "/ui", ui_page, NEED_NONE, 0, 0},
    {"GET", "/ui/app.js", ui_script, NEED_NONE, 0, 0},
    {"GET", "/ui/app.css", ui_style, NEED_NONE, 0, 0},
    {"GET", "/ui/favicon.svg", ui_icon, NEED_NONE, 0, 0},
    {NULL, NULL, NULL, 0, 0, 0},
};
