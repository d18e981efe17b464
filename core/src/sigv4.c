/* AWS Signature Version 4 header signing. */
#include "junction/error.h"
#include "junction/sigv4.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "junction/crypto.h"

#define ALGORITHM "AWS4-HMAC-SHA256"
#define TERMINATOR "aws4_request"
#define MAX_UNIX_SECONDS 253402300799LL /* 9999-12-31T23:59:59Z */

/* ---- Errors, buffers, character classes ---------------------------------- */

/* Growable string; an allocation failure is remembered and reported once, by
 * sb_finish, so that builders need not check every append. */
struct sbuf {
    char *p;
    size_t len;
    size_t cap;
    int failed;
};

static int sb_reserve(struct sbuf *b, size_t n)
{
    if (b->failed)
        return -1;
    if (b->p != NULL && n < b->cap - b->len)
        return 0;
    if (n > SIZE_MAX / 2 - b->len - 64) {
        b->failed = 1;
        return -1;
    }
    size_t cap = b->cap > 0 ? b->cap : 64;
    while (cap <= b->len + n)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->failed = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (sb_reserve(b, n) != 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_adds(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_addc(struct sbuf *b, char c)
{
    sb_add(b, &c, 1);
}

static void sb_discard(struct sbuf *b)
{
    if (b->p != NULL)
        OPENSSL_cleanse(b->p, b->cap);
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* Returns the NUL-terminated string (owned by the caller), or NULL when an
 * allocation failed. */
static char *sb_finish(struct sbuf *b)
{
    sb_reserve(b, 0);
    if (b->failed) {
        sb_discard(b);
        return NULL;
    }
    char *p = b->p;
    p[b->len] = '\0';
    memset(b, 0, sizeof(*b));
    return p;
}

static int is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

static int is_unreserved(unsigned char c)
{
    return is_alnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

/* RFC 9110 token characters, the only ones allowed in methods and header names. */
static int is_tchar(unsigned char c)
{
    return is_alnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int is_token(const char *s)
{
    if (s == NULL || *s == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if (!is_tchar((unsigned char)*s))
            return 0;
    return 1;
}

/* ---- Percent-encoding ---------------------------------------------------- */

static void sb_add_encoded(struct sbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c)) {
            sb_addc(b, (char)c);
            continue;
        }
        char e[3] = {'%', hex[c >> 4], hex[c & 15]};
        sb_add(b, e, sizeof(e));
    }
}

/* Decodes %XY escapes in place; returns the new length, or -1 on a bad escape. */
static long pct_decode(char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            s[o++] = s[i];
            continue;
        }
        int hi = i + 2 < n ? jn_hex_value((unsigned char)s[i + 1]) : -1;
        int lo = i + 2 < n ? jn_hex_value((unsigned char)s[i + 2]) : -1;
        if (hi < 0 || lo < 0)
            return -1;
        s[o++] = (char)(hi << 4 | lo);
        i += 2;
    }
    return (long)o;
}

/* Appends s[0..n) decoded then encoded, so that any spelling of a character
 * ("%7e", "~", "%7E") canonicalizes alike. Returns -1 on a bad escape. */
static int sb_add_reencoded(struct sbuf *b, const char *s, size_t n)
{
    char *tmp = malloc(n + 1);
    if (tmp == NULL) {
        b->failed = 1;
        return 0;
    }
    memcpy(tmp, s, n);
    long len = pct_decode(tmp, n);
    if (len >= 0)
        sb_add_encoded(b, tmp, (size_t)len);
    free(tmp);
    return len < 0 ? -1 : 0;
}

/* ---- Canonical URI ------------------------------------------------------- */

struct seg {
    const char *p;
    size_t n;
};

static int seg_is(struct seg s, const char *lit)
{
    return s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0;
}

/* One segment per '/': "/" is one empty segment, "//a" is "", "a". */
static struct seg *split_path(const char *path, size_t *nseg)
{
    size_t n = 0;
    for (const char *p = path; *p != '\0'; p++)
        n += *p == '/';
    struct seg *v = calloc(n, sizeof(*v));
    if (v == NULL)
        return NULL;
    const char *p = path + 1;
    for (size_t i = 0; i < n; i++) {
        const char *end = strchr(p, '/');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        v[i] = (struct seg){p, len};
        p += len + 1;
    }
    *nseg = n;
    return v;
}

/* RFC 3986 remove_dot_segments, and empty segments dropped (AWS collapses
 * repeated slashes); a trailing slash survives. */
static size_t normalize_segs(struct seg *v, size_t n)
{
    size_t out = 0;
    int trailing = 0;
    for (size_t i = 0; i < n; i++) {
        trailing = 1;
        if (seg_is(v[i], "") || seg_is(v[i], "."))
            continue;
        if (seg_is(v[i], "..")) {
            if (out > 0)
                out--;
            continue;
        }
        trailing = 0;
        v[out++] = v[i];
    }
    if (trailing && out > 0)
        v[out++] = (struct seg){"", 0};
    return out;
}

static int check_path(const char *path, char *err, size_t errlen)
{
    if (path[0] != '/')
        return jn_errorf(err, errlen, "sigv4: path must start with '/'");
    for (const char *p = path; *p != '\0'; p++) {
        if (*p == '?' || *p == '#')
            return jn_errorf(err, errlen, "sigv4: path contains '%c' (pass the query separately)",
                             *p);
        if (is_ctl((unsigned char)*p))
            return jn_errorf(err, errlen, "sigv4: path contains a control character");
    }
    return 0;
}

static int canonical_path(struct sbuf *b, const char *path, unsigned flags, char *err,
                          size_t errlen)
{
    if (path == NULL || *path == '\0')
        path = "/";
    if (check_path(path, err, errlen) != 0)
        return -1;
    size_t n = 0;
    struct seg *v = split_path(path, &n);
    if (v == NULL)
        return jn_errorf(err, errlen, "sigv4: out of memory");
    if (flags & JN_SIGV4_NORMALIZE_PATH)
        n = normalize_segs(v, n);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        sb_addc(b, '/');
        if (flags & JN_SIGV4_DOUBLE_ENCODE)
            sb_add_encoded(b, v[i].p, v[i].n);
        else
            rc = sb_add_reencoded(b, v[i].p, v[i].n);
    }
    if (n == 0)
        sb_addc(b, '/');
    free(v);
    return rc == 0 ? 0 : jn_errorf(err, errlen, "sigv4: bad percent-encoding in path");
}

/* ---- Canonical query string ---------------------------------------------- */

struct qparam {
    char *key; /* encoded */
    char *value;
};

static int qparam_cmp(const void *a, const void *b)
{
    const struct qparam *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c != 0 ? c : strcmp(x->value, y->value);
}

static char *reencode(const char *s, size_t n, int *bad)
{
    struct sbuf b = {0};
    if (sb_add_reencoded(&b, s, n) != 0) {
        *bad = 1;
        sb_discard(&b);
        return NULL;
    }
    return sb_finish(&b);
}

/* Splits "k=v" (or "k") into an encoded pair; returns -1 on OOM, -2 on a bad escape. */
static int parse_param(const char *s, size_t n, struct qparam *out)
{
    const char *eq = memchr(s, '=', n);
    size_t klen = eq != NULL ? (size_t)(eq - s) : n;
    int bad = 0;
    out->key = reencode(s, klen, &bad);
    if (out->key != NULL)
        out->value = eq != NULL ? reencode(eq + 1, n - klen - 1, &bad) : reencode("", 0, &bad);
    if (out->key != NULL && out->value != NULL)
        return 0;
    free(out->key);
    free(out->value);
    return bad ? -2 : -1;
}

static void free_params(struct qparam *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].key);
        free(v[i].value);
    }
    free(v);
}

static int parse_query(const char *query, struct qparam **out, size_t *nout, char *err,
                       size_t errlen)
{
    size_t cap = 1;
    for (const char *p = query; *p != '\0'; p++) {
        cap += *p == '&';
        if (is_ctl((unsigned char)*p) || *p == '#')
            return jn_errorf(err, errlen, "sigv4: query contains a character that must be encoded");
    }
    struct qparam *v = calloc(cap, sizeof(*v));
    if (v == NULL)
        return jn_errorf(err, errlen, "sigv4: out of memory");
    size_t n = 0;
    for (const char *p = query; *p != '\0';) {
        size_t len = strcspn(p, "&");
        int rc = len > 0 ? parse_param(p, len, &v[n]) : 0;
        if (rc != 0) {
            free_params(v, n);
            return jn_errorf(err, errlen,
                             rc == -2 ? "sigv4: bad percent-encoding in query"
                                      : "sigv4: out of memory");
        }
        n += len > 0;
        p += len + (p[len] == '&');
    }
    *out = v;
    *nout = n;
    return 0;
}

static int canonical_query(struct sbuf *b, const char *query, char *err, size_t errlen)
{
    if (query == NULL || *query == '\0')
        return 0;
    struct qparam *v = NULL;
    size_t n = 0;
    if (parse_query(query, &v, &n, err, errlen) != 0)
        return -1;
    qsort(v, n, sizeof(*v), qparam_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            sb_addc(b, '&');
        sb_adds(b, v[i].key);
        sb_addc(b, '=');
        sb_adds(b, v[i].value);
    }
    free_params(v, n);
    return 0;
}

/* ---- Canonical headers --------------------------------------------------- */

struct hentry {
    char *name; /* lower-cased */
    char *value;
    size_t order;
};

struct hlist {
    struct hentry *v;
    size_t n;
};

/* Not signed: libcurl and proxies add, drop or rewrite them in transit. */
static const char *const unsigned_headers[] = {"user-agent", "expect", "connection",
                                               "x-amzn-trace-id"};

static int is_unsigned_header(const char *lname)
{
    for (size_t i = 0; i < sizeof(unsigned_headers) / sizeof(unsigned_headers[0]); i++)
        if (strcmp(lname, unsigned_headers[i]) == 0)
            return 1;
    return 0;
}

static char *lower_dup(const char *s)
{
    char *d = strdup(s);
    for (char *p = d; p != NULL && *p != '\0'; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return d;
}

/* Trims spaces and tabs and collapses their runs to one space. */
static char *normalize_value(const char *value)
{
    char *out = malloc(strlen(value) + 1), *o = out;
    if (out == NULL)
        return NULL;
    int space = 0;
    for (const char *p = value; *p != '\0'; p++) {
        if (*p == ' ' || *p == '\t') {
            space = 1;
            continue;
        }
        if (space && o != out)
            *o++ = ' ';
        space = 0;
        *o++ = *p;
    }
    *o = '\0';
    return out;
}

static int check_value(const char *value)
{
    for (const char *p = value; *p != '\0'; p++)
        if (is_ctl((unsigned char)*p) && *p != '\t')
            return -1;
    return 0;
}

static int hlist_add(struct hlist *l, char *lname, const char *value)
{
    char *v = normalize_value(value);
    if (v == NULL) {
        free(lname);
        return -1;
    }
    l->v[l->n] = (struct hentry){lname, v, l->n};
    l->n++;
    return 0;
}

static void hlist_free(struct hlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        if (l->v[i].value != NULL)
            OPENSSL_cleanse(l->v[i].value, strlen(l->v[i].value));
        free(l->v[i].value);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static int has_token(const jn_sigv4_params_t *p)
{
    return p->session_token != NULL && *p->session_token != '\0';
}

/* Headers the signer sets itself, refused from the caller. */
static const char *reserved_reason(const char *lname, const jn_sigv4_params_t *p)
{
    if (strcmp(lname, "authorization") == 0)
        return "is set by the signer (drop the one of an earlier signing)";
    if (strcmp(lname, "x-amz-date") == 0)
        return "is set by the signer (pass amz_date instead)";
    if (strcmp(lname, "x-amz-security-token") == 0 && has_token(p))
        return "duplicates the session token";
    if (strcmp(lname, "x-amz-content-sha256") == 0 && (p->flags & JN_SIGV4_CONTENT_SHA256))
        return "is set by the signer with JN_SIGV4_CONTENT_SHA256";
    return NULL;
}

static int add_user_header(struct hlist *l, size_t i, const jn_sigv4_header_t *h,
                           const jn_sigv4_params_t *p, char *err, size_t errlen)
{
    if (!is_token(h->name))
        return jn_errorf(err, errlen, "sigv4: header %zu: invalid name", i);
    if (h->value == NULL || check_value(h->value) != 0)
        return jn_errorf(err, errlen, "sigv4: header %s: missing value or control character in it",
                         h->name);
    char *lname = lower_dup(h->name);
    if (lname == NULL)
        return jn_errorf(err, errlen, "sigv4: out of memory");
    const char *why = reserved_reason(lname, p);
    if (why != NULL || is_unsigned_header(lname)) {
        free(lname);
        return why == NULL ? 0 : jn_errorf(err, errlen, "sigv4: header %s %s", h->name, why);
    }
    return hlist_add(l, lname, h->value) == 0 ? 0 : jn_errorf(err, errlen, "sigv4: out of memory");
}

static int add_signer_header(struct hlist *l, const char *lname, const char *value, char *err,
                             size_t errlen)
{
    char *name = strdup(lname);
    if (name == NULL || hlist_add(l, name, value) != 0)
        return jn_errorf(err, errlen, "sigv4: out of memory");
    return 0;
}

static int hentry_cmp(const void *a, const void *b)
{
    const struct hentry *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

struct signer_values {
    const char *amz_date;
    const char *token;          /* NULL when not signed */
    const char *content_sha256; /* NULL when not sent */
};

static int collect_headers(struct hlist *l, const jn_sigv4_request_t *req,
                           const jn_sigv4_params_t *p, const struct signer_values *sv, char *err,
                           size_t errlen)
{
    if (req->nheaders > 0 && req->headers == NULL)
        return jn_errorf(err, errlen, "sigv4: headers is NULL");
    l->v = calloc(req->nheaders + 3, sizeof(*l->v));
    if (l->v == NULL)
        return jn_errorf(err, errlen, "sigv4: out of memory");
    for (size_t i = 0; i < req->nheaders; i++)
        if (add_user_header(l, i, &req->headers[i], p, err, errlen) != 0)
            return -1;
    if (add_signer_header(l, "x-amz-date", sv->amz_date, err, errlen) != 0)
        return -1;
    if (sv->token != NULL &&
        add_signer_header(l, "x-amz-security-token", sv->token, err, errlen) != 0)
        return -1;
    if (sv->content_sha256 != NULL &&
        add_signer_header(l, "x-amz-content-sha256", sv->content_sha256, err, errlen) != 0)
        return -1;
    qsort(l->v, l->n, sizeof(*l->v), hentry_cmp);
    return 0;
}

static int check_host(const struct hlist *l, char *err, size_t errlen)
{
    size_t hosts = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->v[i].name, "host") != 0)
            continue;
        if (l->v[i].value[0] == '\0')
            return jn_errorf(err, errlen, "sigv4: empty Host header");
        hosts++;
    }
    if (hosts == 0)
        return jn_errorf(err, errlen, "sigv4: missing Host header");
    return hosts == 1 ? 0 : jn_errorf(err, errlen, "sigv4: more than one Host header");
}

/* Appends "name:v1,v2\n" per name to `b` and "name;name" to `sh`. */
static void emit_headers(const struct hlist *l, struct sbuf *b, struct sbuf *sh)
{
    for (size_t i = 0; i < l->n;) {
        const char *name = l->v[i].name;
        sb_adds(b, name);
        sb_addc(b, ':');
        sb_adds(b, l->v[i].value);
        for (i++; i < l->n && strcmp(l->v[i].name, name) == 0; i++) {
            sb_addc(b, ',');
            sb_adds(b, l->v[i].value);
        }
        sb_addc(b, '\n');
        if (sh->len > 0)
            sb_addc(sh, ';');
        sb_adds(sh, name);
    }
}

static int canonical_headers(struct sbuf *b, struct sbuf *sh, const jn_sigv4_request_t *req,
                             const jn_sigv4_params_t *p, const struct signer_values *sv, char *err,
                             size_t errlen)
{
    struct hlist l = {0};
    int rc = collect_headers(&l, req, p, sv, err, errlen);
    if (rc == 0)
        rc = check_host(&l, err, errlen);
    if (rc == 0)
        emit_headers(&l, b, sh);
    hlist_free(&l);
    return rc;
}

/* ---- Dates and inputs ---------------------------------------------------- */

static int digits(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int valid_ymd(const char *s)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y = digits(s, 4), m = digits(s + 4, 2), d = digits(s + 6, 2);
    if (y < 0 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
        return 0;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m != 2 || d <= 28 + leap;
}

static int valid_date(const char *s)
{
    return s != NULL && strlen(s) == JN_SIGV4_DATE_LEN && valid_ymd(s);
}

static int valid_amz_date(const char *s)
{
    if (s == NULL || strlen(s) != JN_SIGV4_AMZ_DATE_LEN || s[8] != 'T' || s[15] != 'Z')
        return 0;
    int h = digits(s + 9, 2), mi = digits(s + 11, 2), sec = digits(s + 13, 2);
    return valid_ymd(s) && h >= 0 && h < 24 && mi >= 0 && mi < 60 && sec >= 0 && sec < 60;
}

int jn_sigv4_amz_date(int64_t unix_seconds, char out[JN_SIGV4_AMZ_DATE_LEN + 1], char *err,
                      size_t errlen)
{
    struct tm tm;
    time_t t = (time_t)unix_seconds;
    if (out == NULL)
        return jn_errorf(err, errlen, "sigv4: NULL output");
    if (unix_seconds < 0 || unix_seconds > MAX_UNIX_SECONDS || gmtime_r(&t, &tm) == NULL)
        return jn_errorf(err, errlen, "sigv4: bad date: %lld is outside 1970-9999",
                         (long long)unix_seconds);
    if (strftime(out, JN_SIGV4_AMZ_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm) != JN_SIGV4_AMZ_DATE_LEN)
        return jn_errorf(err, errlen, "sigv4: bad date: cannot format %lld",
                         (long long)unix_seconds);
    return 0;
}

static int resolve_date(const jn_sigv4_params_t *p, char out[JN_SIGV4_AMZ_DATE_LEN + 1], char *err,
                        size_t errlen)
{
    if (p->amz_date == NULL)
        return jn_sigv4_amz_date(p->time, out, err, errlen);
    if (!valid_amz_date(p->amz_date))
        return jn_errorf(err, errlen, "sigv4: bad X-Amz-Date \"%.32s\" (want YYYYMMDDTHHMMSSZ)",
                         p->amz_date);
    memcpy(out, p->amz_date, JN_SIGV4_AMZ_DATE_LEN + 1);
    return 0;
}

/* Region and service appear in the '/'-separated credential scope. */
static int valid_scope_part(const char *s)
{
    if (s == NULL || *s == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if (!is_alnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
            return 0;
    return 1;
}

static int valid_access_key_id(const char *s)
{
    if (s == NULL || *s == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if (is_ctl((unsigned char)*s) || strchr(" /,", *s) != NULL)
            return 0;
    return 1;
}

static int check_params(const jn_sigv4_params_t *p, char *err, size_t errlen)
{
    if (!valid_scope_part(p->region))
        return jn_errorf(err, errlen, "sigv4: missing or invalid region");
    if (!valid_scope_part(p->service))
        return jn_errorf(err, errlen, "sigv4: missing or invalid service");
    if (!valid_access_key_id(p->access_key_id))
        return jn_errorf(err, errlen, "sigv4: missing or invalid access key id");
    if (p->signing_key == NULL && (p->secret_access_key == NULL || *p->secret_access_key == '\0'))
        return jn_errorf(err, errlen, "sigv4: missing secret access key");
    if (has_token(p) && check_value(p->session_token) != 0)
        return jn_errorf(err, errlen, "sigv4: session token contains a control character");
    return 0;
}

/* A digest (64 lower-case hex digits) or a literal such as UNSIGNED-PAYLOAD or
 * STREAMING-AWS4-HMAC-SHA256-PAYLOAD; an upper-case digest would not match the
 * one the service computes. */
static int valid_payload_hash(const char *s)
{
    size_t n = strlen(s), hex = 0, lit = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        hex += (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        lit += (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    }
    if (n == 2 * JN_SHA256_LEN && hex == n)
        return 1;
    return lit == n && s[0] >= 'A' && s[0] <= 'Z' && strchr(s, '-') != NULL;
}

static int payload_hash(const jn_sigv4_request_t *req, char out[2 * JN_SHA256_LEN + 1],
                        const char **hash, char *err, size_t errlen)
{
    uint8_t md[JN_SHA256_LEN];
    if (req->payload_hash != NULL) {
        if (!valid_payload_hash(req->payload_hash))
            return jn_errorf(err, errlen,
                             "sigv4: payload_hash is neither a hex SHA-256 nor a literal");
        *hash = req->payload_hash;
        return 0;
    }
    if (req->payload == NULL && req->payload_len > 0)
        return jn_errorf(err, errlen, "sigv4: payload is NULL with a non-zero length");
    if (jn_sha256(req->payload, req->payload_len, md) != 0)
        return jn_errorf(err, errlen, "sigv4: SHA-256 failed");
    jn_hex_encode(md, sizeof(md), out);
    *hash = out;
    return 0;
}

/* ---- Signing ------------------------------------------------------------- */

int jn_sigv4_signing_key(const char *secret, const char *date, const char *region,
                         const char *service, uint8_t out[JN_SIGV4_KEY_LEN], char *err,
                         size_t errlen)
{
    if (secret == NULL || *secret == '\0')
        return jn_errorf(err, errlen, "sigv4: missing secret access key");
    if (!valid_date(date))
        return jn_errorf(err, errlen, "sigv4: bad date (want YYYYMMDD)");
    if (!valid_scope_part(region) || !valid_scope_part(service))
        return jn_errorf(err, errlen, "sigv4: missing or invalid region or service");
    if (out == NULL)
        return jn_errorf(err, errlen, "sigv4: NULL output");
    size_t n = strlen(secret) + 4;
    char *k0 = malloc(n + 1);
    if (k0 == NULL)
        return jn_errorf(err, errlen, "sigv4: out of memory");
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, n - 4);
    uint8_t k1[JN_SHA256_LEN], k2[JN_SHA256_LEN], k3[JN_SHA256_LEN];
    int rc = jn_hmac_sha256(k0, n, date, strlen(date), k1);
    rc = rc != 0 ? rc : jn_hmac_sha256(k1, sizeof(k1), region, strlen(region), k2);
    rc = rc != 0 ? rc : jn_hmac_sha256(k2, sizeof(k2), service, strlen(service), k3);
    rc = rc != 0 ? rc : jn_hmac_sha256(k3, sizeof(k3), TERMINATOR, strlen(TERMINATOR), out);
    OPENSSL_cleanse(k0, n);
    free(k0);
    OPENSSL_cleanse(k1, sizeof(k1));
    OPENSSL_cleanse(k2, sizeof(k2));
    OPENSSL_cleanse(k3, sizeof(k3));
    if (rc != 0) {
        OPENSSL_cleanse(out, JN_SIGV4_KEY_LEN);
        return jn_errorf(err, errlen, "sigv4: HMAC-SHA256 failed");
    }
    return 0;
}

static int build_canonical_request(const jn_sigv4_request_t *req, const jn_sigv4_params_t *p,
                                   const struct signer_values *sv, const char *hash,
                                   jn_sigv4_result_t *res, char *err, size_t errlen)
{
    struct sbuf b = {0}, sh = {0};
    sb_adds(&b, req->method);
    sb_addc(&b, '\n');
    if (canonical_path(&b, req->path, p->flags, err, errlen) != 0)
        goto fail;
    sb_addc(&b, '\n');
    if (canonical_query(&b, req->query, err, errlen) != 0)
        goto fail;
    sb_addc(&b, '\n');
    if (canonical_headers(&b, &sh, req, p, sv, err, errlen) != 0)
        goto fail;
    sb_addc(&b, '\n');
    sb_adds(&b, sh.p != NULL ? sh.p : "");
    sb_addc(&b, '\n');
    sb_adds(&b, hash);
    res->signed_headers = sb_finish(&sh);
    res->canonical_request = sb_finish(&b);
    if (res->signed_headers == NULL || res->canonical_request == NULL)
        return jn_errorf(err, errlen, "sigv4: out of memory");
    return 0;

fail:
    sb_discard(&b);
    sb_discard(&sh);
    return -1;
}

static char *string_to_sign(const char *amz_date, const char *scope, const char *creq)
{
    uint8_t md[JN_SHA256_LEN];
    char hex[2 * JN_SHA256_LEN + 1];
    if (jn_sha256(creq, strlen(creq), md) != 0)
        return NULL;
    jn_hex_encode(md, sizeof(md), hex);
    struct sbuf b = {0};
    sb_adds(&b, ALGORITHM "\n");
    sb_adds(&b, amz_date);
    sb_addc(&b, '\n');
    sb_adds(&b, scope);
    sb_addc(&b, '\n');
    sb_adds(&b, hex);
    return sb_finish(&b);
}

static char *credential_scope(const char *amz_date, const jn_sigv4_params_t *p)
{
    struct sbuf b = {0};
    sb_add(&b, amz_date, JN_SIGV4_DATE_LEN);
    sb_addc(&b, '/');
    sb_adds(&b, p->region);
    sb_addc(&b, '/');
    sb_adds(&b, p->service);
    sb_adds(&b, "/" TERMINATOR);
    return sb_finish(&b);
}

static int compute_signature(const jn_sigv4_params_t *p, const char *amz_date,
                             jn_sigv4_result_t *res, char *err, size_t errlen)
{
    uint8_t key[JN_SIGV4_KEY_LEN], mac[JN_SHA256_LEN];
    char date[JN_SIGV4_DATE_LEN + 1];
    memcpy(date, amz_date, JN_SIGV4_DATE_LEN);
    date[JN_SIGV4_DATE_LEN] = '\0';
    if (p->signing_key != NULL)
        memcpy(key, p->signing_key, sizeof(key));
    else if (jn_sigv4_signing_key(p->secret_access_key, date, p->region, p->service, key, err,
                                  errlen) != 0)
        return -1;
    const char *sts = res->string_to_sign;
    int rc = jn_hmac_sha256(key, sizeof(key), sts, strlen(sts), mac);
    OPENSSL_cleanse(key, sizeof(key));
    if (rc != 0)
        return jn_errorf(err, errlen, "sigv4: HMAC-SHA256 failed");
    res->signature = malloc(2 * JN_SHA256_LEN + 1);
    if (res->signature == NULL)
        return jn_errorf(err, errlen, "sigv4: out of memory");
    jn_hex_encode(mac, sizeof(mac), res->signature);
    return 0;
}

static char *authorization(const jn_sigv4_params_t *p, const jn_sigv4_result_t *res)
{
    struct sbuf b = {0};
    sb_adds(&b, ALGORITHM " Credential=");
    sb_adds(&b, p->access_key_id);
    sb_addc(&b, '/');
    sb_adds(&b, res->credential_scope);
    sb_adds(&b, ", SignedHeaders=");
    sb_adds(&b, res->signed_headers);
    sb_adds(&b, ", Signature=");
    sb_adds(&b, res->signature);
    return sb_finish(&b);
}

static void add_header(jn_sigv4_result_t *res, const char *name, const char *value)
{
    res->add[res->nadd++] = (jn_sigv4_header_t){name, value};
}

static int finish_headers(const jn_sigv4_params_t *p, const char *amz_date, const char *hash,
                          jn_sigv4_result_t *res, char *err, size_t errlen)
{
    res->amz_date = strdup(amz_date);
    res->authorization = authorization(p, res);
    if (has_token(p))
        res->security_token = strdup(p->session_token);
    if (p->flags & JN_SIGV4_CONTENT_SHA256)
        res->content_sha256 = strdup(hash);
    if (res->amz_date == NULL || res->authorization == NULL ||
        (has_token(p) && res->security_token == NULL) ||
        ((p->flags & JN_SIGV4_CONTENT_SHA256) && res->content_sha256 == NULL))
        return jn_errorf(err, errlen, "sigv4: out of memory");
    add_header(res, "X-Amz-Date", res->amz_date);
    if (res->security_token != NULL)
        add_header(res, "X-Amz-Security-Token", res->security_token);
    if (res->content_sha256 != NULL)
        add_header(res, "x-amz-content-sha256", res->content_sha256);
    add_header(res, "Authorization", res->authorization);
    return 0;
}

int jn_sigv4_sign(const jn_sigv4_request_t *req, const jn_sigv4_params_t *params,
                  jn_sigv4_result_t *res, char *err, size_t errlen)
{
    char amz_date[JN_SIGV4_AMZ_DATE_LEN + 1], hex[2 * JN_SHA256_LEN + 1];
    const char *hash = NULL;
    if (res == NULL)
        return jn_errorf(err, errlen, "sigv4: NULL result");
    memset(res, 0, sizeof(*res));
    if (req == NULL || params == NULL)
        return jn_errorf(err, errlen, "sigv4: NULL request or parameters");
    if (!is_token(req->method))
        return jn_errorf(err, errlen, "sigv4: missing or invalid method");
    if (check_params(params, err, errlen) != 0 ||
        resolve_date(params, amz_date, err, errlen) != 0 ||
        payload_hash(req, hex, &hash, err, errlen) != 0)
        return -1;
    int sign_token = has_token(params) && !(params->flags & JN_SIGV4_UNSIGNED_TOKEN);
    struct signer_values sv = {amz_date, sign_token ? params->session_token : NULL,
                               (params->flags & JN_SIGV4_CONTENT_SHA256) ? hash : NULL};
    if (build_canonical_request(req, params, &sv, hash, res, err, errlen) != 0)
        goto fail;
    res->credential_scope = credential_scope(amz_date, params);
    if (res->credential_scope != NULL)
        res->string_to_sign =
            string_to_sign(amz_date, res->credential_scope, res->canonical_request);
    if (res->string_to_sign == NULL) {
        jn_errorf(err, errlen, "sigv4: out of memory");
        goto fail;
    }
    if (compute_signature(params, amz_date, res, err, errlen) != 0 ||
        finish_headers(params, amz_date, hash, res, err, errlen) != 0)
        goto fail;
    return 0;

fail:
    jn_sigv4_result_free(res);
    return -1;
}

static void free_wiped(char *s)
{
    if (s != NULL)
        OPENSSL_cleanse(s, strlen(s));
    free(s);
}

void jn_sigv4_result_free(jn_sigv4_result_t *res)
{
    if (res == NULL)
        return;
    /* The canonical request carries the session token when it is signed. */
    free_wiped(res->canonical_request);
    free_wiped(res->security_token);
    free(res->string_to_sign);
    free(res->signature);
    free(res->signed_headers);
    free(res->credential_scope);
    free(res->authorization);
    free(res->amz_date);
    free(res->content_sha256);
    memset(res, 0, sizeof(*res));
}
