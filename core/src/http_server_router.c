/* The HTTP server's router: method + path pattern with {name} parameters.
 *
 * Routes are few (tens), so matching is a walk over all of them comparing
 * segments; the walk also collects what a 405 needs (the methods allowed for
 * the path). Among patterns matching the same path, the one with a literal
 * segment where the other has a parameter, at the first position they
 * differ, wins: /v1/integrations/search beats /v1/integrations/{id}.
 */
#include "http_server_internal.h"

#include "junction/error.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The specificity of a match is a bit per segment in a uint64_t. */
#define MAX_SEGMENTS 32
#define ALLOW_MAX_METHODS 16

void hs_router_init(hs_router_t *r)
{
    memset(r, 0, sizeof *r);
}

static void route_free(hs_route_t *rt)
{
    if (!rt)
        return;
    for (size_t i = 0; i < rt->nsegs; i++) {
        free(rt->segs[i]);
        free(rt->params[i]);
    }
    free(rt->segs);
    free(rt->params);
    free(rt->seglen);
    free(rt->method);
    free(rt->pattern);
    free(rt);
}

void hs_router_free(hs_router_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        route_free(r->routes[i]);
    free(r->routes);
    memset(r, 0, sizeof *r);
}

static bool param_name_valid(const char *s, size_t len)
{
    if (len == 0 || !(islower((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 1; i < len; i++) {
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_'))
            return false;
    }
    return true;
}

/* A literal segment: pchar only (no escapes: patterns are written decoded
 * and compared with the raw path, so they must not need any). */
static bool literal_valid(const char *s, size_t len)
{
    static const char extra[] = "-._~!$&'()*+,;=:@";

    if (len == 0)
        return false;
    if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!(isalnum(c) && c < 0x80) && !strchr(extra, c))
            return false;
    }
    return true;
}

static int parse_pattern(hs_route_t *rt, const char *pattern, char *err, size_t errlen)
{
    const char *s = pattern + 1;
    size_t nparams = 0;

    if (pattern[0] != '/')
        return jn_errorf(err, errlen, "route pattern '%s' must start with '/'", pattern);
    rt->segs = calloc(MAX_SEGMENTS, sizeof *rt->segs);
    rt->params = calloc(MAX_SEGMENTS, sizeof *rt->params);
    rt->seglen = calloc(MAX_SEGMENTS, sizeof *rt->seglen);
    if (!rt->segs || !rt->params || !rt->seglen)
        return jn_errorf(err, errlen, "out of memory");
    if (*s == '\0')
        return 0; /* "/": no segment */
    for (;;) {
        const char *end = strchr(s, '/');
        size_t len = end ? (size_t)(end - s) : strlen(s);

        if (rt->nsegs == MAX_SEGMENTS)
            return jn_errorf(err, errlen, "route pattern '%s' has more than %d segments", pattern,
                             MAX_SEGMENTS);
        if (len >= 2 && s[0] == '{' && s[len - 1] == '}') {
            if (!param_name_valid(s + 1, len - 2))
                return jn_errorf(err, errlen,
                                 "route pattern '%s': parameter names are [a-z_][a-z0-9_]*",
                                 pattern);
            if (nparams == JN_HTTP_MAX_PARAMS)
                return jn_errorf(err, errlen, "route pattern '%s' has more than %d parameters",
                                 pattern, JN_HTTP_MAX_PARAMS);
            rt->params[rt->nsegs] = strndup(s + 1, len - 2);
            if (!rt->params[rt->nsegs])
                return jn_errorf(err, errlen, "out of memory");
            for (size_t i = 0; i < rt->nsegs; i++) {
                if (rt->params[i] && strcmp(rt->params[i], rt->params[rt->nsegs]) == 0) {
                    rt->nsegs++;
                    return jn_errorf(err, errlen, "route pattern '%s' repeats a parameter name",
                                     pattern);
                }
            }
            nparams++;
        } else if (literal_valid(s, len)) {
            rt->segs[rt->nsegs] = strndup(s, len);
            if (!rt->segs[rt->nsegs])
                return jn_errorf(err, errlen, "out of memory");
            rt->seglen[rt->nsegs] = len;
        } else {
            return jn_errorf(err, errlen,
                             "route pattern '%s': a segment is empty, a dot-segment, holds a "
                             "character that needs escaping, or is not a whole {param}",
                             pattern);
        }
        rt->nsegs++;
        if (!end)
            return 0;
        s = end + 1;
    }
}

static bool same_shape(const hs_route_t *a, const hs_route_t *b)
{
    if (a->nsegs != b->nsegs)
        return false;
    for (size_t i = 0; i < a->nsegs; i++) {
        if ((a->segs[i] == NULL) != (b->segs[i] == NULL))
            return false;
        if (a->segs[i] && strcmp(a->segs[i], b->segs[i]) != 0)
            return false;
    }
    return true;
}

int hs_router_add(hs_router_t *r, const char *method, const char *pattern,
                  jn_http_handler_fn handler, void *ud, const jn_http_route_opts_t *opts, char *err,
                  size_t errlen)
{
    hs_route_t *rt;
    size_t mlen;

    if (!method || !pattern || !handler)
        return jn_errorf(err, errlen, "a route needs a method, a pattern and a handler");
    mlen = strlen(method);
    if (mlen == 0 || mlen > 32)
        return jn_errorf(err, errlen, "route method must be a token of 1 to 32 characters");
    for (size_t i = 0; i < mlen; i++) {
        if (!hs_is_tchar((unsigned char)method[i]))
            return jn_errorf(err, errlen, "route method '%s' is not a token", method);
    }
    rt = calloc(1, sizeof *rt);
    if (!rt)
        return jn_errorf(err, errlen, "out of memory");
    if (parse_pattern(rt, pattern, err, errlen) != 0) {
        route_free(rt);
        return -1;
    }
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->routes[i]->method, method) == 0 && same_shape(r->routes[i], rt)) {
            jn_errorf(err, errlen, "route %s %s is already defined (as %s)", method, pattern,
                      r->routes[i]->pattern);
            route_free(rt);
            return -1;
        }
    }
    rt->method = strdup(method);
    rt->pattern = strdup(pattern);
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        hs_route_t **v = realloc(r->routes, cap * sizeof *v);

        if (!v) {
            route_free(rt);
            return jn_errorf(err, errlen, "out of memory");
        }
        r->routes = v;
        r->cap = cap;
    }
    if (!rt->method || !rt->pattern) {
        route_free(rt);
        return jn_errorf(err, errlen, "out of memory");
    }
    rt->handler = handler;
    rt->ud = ud;
    if (opts)
        rt->opts = *opts;
    rt->stats.method = rt->method;
    rt->stats.pattern = rt->pattern;
    r->routes[r->n++] = rt;
    return 0;
}

typedef struct {
    const char *s;
    size_t len;
} span_t;

/* The path's segments, split once for all the routes: their number, or -1
 * when one is empty or there are more than a route can have (no route
 * matches such a path). */
static int split_path(const char *path, span_t *out)
{
    const char *s = path + 1;
    int n = 0;

    if (*s == '\0')
        return 0;
    for (;;) {
        const char *end = strchr(s, '/');
        size_t len = end ? (size_t)(end - s) : strlen(s);

        if (len == 0 || n == MAX_SEGMENTS)
            return -1;
        out[n].s = s;
        out[n].len = len;
        n++;
        if (!end)
            return n;
        s = end + 1;
    }
}

/* Matches the path's segments against one route: the specificity (a bit per
 * segment, set for a literal, first segment highest) + 1, or 0. */
static uint64_t route_matches(const hs_route_t *rt, const span_t *segs, int n, hs_match_t *m)
{
    uint64_t spec = 0;

    if (m)
        m->n = 0;
    if (n < 0 || (size_t)n != rt->nsegs)
        return 0;
    for (int i = 0; i < n; i++) {
        spec <<= 1;
        if (rt->segs[i]) {
            if (rt->seglen[i] != segs[i].len || memcmp(rt->segs[i], segs[i].s, segs[i].len) != 0)
                return 0;
            spec |= 1;
        } else if (m) {
            m->name[m->n] = rt->params[i];
            m->raw[m->n] = segs[i].s;
            m->raw_len[m->n] = segs[i].len;
            m->n++;
        }
    }
    return spec + 1;
}

static void allow_add(const char **methods, size_t *n, const char *method)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(methods[i], method) == 0)
            return;
    }
    if (*n < ALLOW_MAX_METHODS)
        methods[(*n)++] = method;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

hs_route_t *hs_router_match(const hs_router_t *r, const char *method, const char *path,
                            hs_match_t *m, int *status, char *allow, size_t allowlen)
{
    const hs_route_t *best = NULL, *best_get = NULL;
    uint64_t best_spec = 0, best_get_spec = 0;
    const char *methods[ALLOW_MAX_METHODS];
    size_t nmethods = 0, off = 0;
    bool is_head = strcmp(method, "HEAD") == 0, any = false;
    span_t segs[MAX_SEGMENTS];
    int nsegs = split_path(path, segs);

    for (size_t i = 0; i < r->n; i++) {
        const hs_route_t *rt = r->routes[i];
        uint64_t spec = route_matches(rt, segs, nsegs, NULL);

        if (!spec)
            continue;
        any = true;
        allow_add(methods, &nmethods, rt->method);
        if (strcmp(rt->method, "GET") == 0)
            allow_add(methods, &nmethods, "HEAD");
        if (strcmp(rt->method, method) == 0 && spec > best_spec) {
            best = rt;
            best_spec = spec;
        }
        if (is_head && strcmp(rt->method, "GET") == 0 && spec > best_get_spec) {
            best_get = rt;
            best_get_spec = spec;
        }
    }
    if (!best)
        best = best_get;
    if (best) {
        route_matches(best, segs, nsegs, m);
        return (hs_route_t *)best;
    }
    *status = any ? 405 : 404;
    if (allowlen)
        allow[0] = '\0';
    qsort(methods, nmethods, sizeof *methods, cmp_str);
    for (size_t i = 0; i < nmethods && any; i++) {
        int w = snprintf(allow + off, allowlen - off, "%s%s", i ? ", " : "", methods[i]);

        if (w < 0 || (size_t)w >= allowlen - off)
            break;
        off += (size_t)w;
    }
    return NULL;
}

int hs_percent_decode(const char *src, size_t len, char *dst)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        if (src[i] == '%') {
            int hi, lo;

            if (i + 2 >= len)
                return -1;
            hi = isxdigit((unsigned char)src[i + 1]) ? src[i + 1] : -1;
            lo = isxdigit((unsigned char)src[i + 2]) ? src[i + 2] : -1;
            if (hi < 0 || lo < 0)
                return -1;
            hi = isdigit(hi) ? hi - '0' : (tolower(hi) - 'a') + 10;
            lo = isdigit(lo) ? lo - '0' : (tolower(lo) - 'a') + 10;
            if (hi == 0 && lo == 0)
                return -1;
            dst[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            dst[o++] = src[i];
        }
    }
    dst[o] = '\0';
    return 0;
}
