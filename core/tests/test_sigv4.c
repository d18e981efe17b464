#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "junction/sigv4.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* ---- Files --------------------------------------------------------------- */

static char *slurp(const char *path, size_t *out_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *data = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *p = realloc(data, cap);
            assert_non_null(p);
            data = p;
        }
        memcpy(data + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (data == NULL)
        data = calloc(1, 1);
    assert_non_null(data);
    data[len] = '\0';
    if (out_len != NULL)
        *out_len = len;
    return data;
}

static char *slurp_case(const char *dir, const char *name, const char *file, size_t *len)
{
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s/%s/%s", dir, name, file);
    assert_true(n > 0 && (size_t)n < sizeof(path));
    char *data = slurp(path, len);
    if (data == NULL)
        print_message("cannot read %s\n", path);
    assert_non_null(data);
    return data;
}

/* The expected-value files carry no trailing newline; one is dropped if present. */
static char *slurp_expected(const char *dir, const char *name, const char *file)
{
    size_t len = 0;
    char *data = slurp_case(dir, name, file, &len);
    if (len > 0 && data[len - 1] == '\n')
        data[--len] = '\0';
    if (len > 0 && data[len - 1] == '\r')
        data[--len] = '\0';
    return data;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* JUNCTION_VECTORS_DIR, else ../shared/vectors from here and up to 3 parents. */
static int find_vectors(char *out, size_t len)
{
    const char *env = getenv("JUNCTION_VECTORS_DIR");
    if (env != NULL && *env != '\0') {
        snprintf(out, len, "%s/aws-sigv4", env);
        return is_dir(out);
    }
    char up[16] = "";
    for (int level = 0; level <= 3; level++, strcat(up, "../")) {
        snprintf(out, len, "%s../shared/vectors/aws-sigv4", up);
        if (is_dir(out))
            return 1;
    }
    return 0;
}

static void require_vectors(char *dir, size_t len)
{
    if (find_vectors(dir, len))
        return;
    const char *ci = getenv("CI");
    if (ci != NULL && strcmp(ci, "true") == 0)
        fail_msg("aws-sigv4 vectors not found under CI (set JUNCTION_VECTORS_DIR)");
    print_message("aws-sigv4 vectors not found (set JUNCTION_VECTORS_DIR); skipping\n");
    skip();
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Case directories are the ones holding a request.txt, sorted by name. */
static char **list_cases(const char *dir, size_t *n)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    char **names = NULL;
    size_t count = 0;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        int n_path = snprintf(path, sizeof(path), "%s/%s/request.txt", dir, e->d_name);
        assert_true(n_path > 0 && (size_t)n_path < sizeof(path));
        if (e->d_name[0] == '.' || access(path, R_OK) != 0)
            continue;
        names = realloc(names, (count + 1) * sizeof(*names));
        assert_non_null(names);
        names[count] = strdup(e->d_name);
        assert_non_null(names[count++]);
    }
    closedir(d);
    qsort(names, count, sizeof(*names), name_cmp);
    *n = count;
    return names;
}

/* ---- request.txt --------------------------------------------------------- */

#define MAX_HEADERS 32

struct raw_request {
    char *method;
    char *path;
    char *query;
    char *names[MAX_HEADERS];
    char *values[MAX_HEADERS];
    jn_sigv4_header_t headers[MAX_HEADERS];
    size_t nheaders;
    char *body;
    size_t body_len;
};

static char *dup_range(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* Returns the length of the line at p without its "\n" or "\r\n"; *next is
 * the start of the following line, or NULL at the end of the text. */
static size_t next_line(const char *p, const char **next)
{
    const char *nl = strchr(p, '\n');
    size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
    *next = nl != NULL ? nl + 1 : NULL;
    return n > 0 && p[n - 1] == '\r' ? n - 1 : n;
}

/* "GET /a b?q=1 HTTP/1.1": the target may hold spaces. */
static void parse_request_line(struct raw_request *r, const char *line, size_t n)
{
    const char *sp1 = memchr(line, ' ', n), *sp2 = line + n;
    assert_non_null(sp1);
    while (sp2 > sp1 && *sp2 != ' ')
        sp2--;
    assert_true(sp2 > sp1);
    r->method = dup_range(line, (size_t)(sp1 - line));
    const char *target = sp1 + 1;
    const char *q = memchr(target, '?', (size_t)(sp2 - target));
    r->path = dup_range(target, (size_t)((q != NULL ? q : sp2) - target));
    r->query = q != NULL ? dup_range(q + 1, (size_t)(sp2 - q - 1)) : dup_range("", 0);
}

/* A folded line continues the previous value; the signer collapses the spaces. */
static void append_continuation(struct raw_request *r, const char *line, size_t n)
{
    assert_true(r->nheaders > 0);
    char **v = &r->values[r->nheaders - 1];
    size_t old = strlen(*v);
    char *s = realloc(*v, old + 1 + n + 1);
    assert_non_null(s);
    s[old] = ' ';
    memcpy(s + old + 1, line, n);
    s[old + 1 + n] = '\0';
    *v = s;
}

static void add_raw_header(struct raw_request *r, const char *line, size_t n)
{
    const char *colon = memchr(line, ':', n);
    assert_non_null(colon);
    assert_true(r->nheaders < MAX_HEADERS);
    r->names[r->nheaders] = dup_range(line, (size_t)(colon - line));
    r->values[r->nheaders] = dup_range(colon + 1, n - (size_t)(colon - line) - 1);
    r->nheaders++;
}

static void parse_request(struct raw_request *r, const char *text, size_t text_len)
{
    memset(r, 0, sizeof(*r));
    const char *p = text, *next;
    size_t n = next_line(p, &next);
    parse_request_line(r, p, n);
    for (p = next; p != NULL; p = next) {
        n = next_line(p, &next);
        if (n == 0)
            break;
        if (p[0] == ' ' || p[0] == '\t')
            append_continuation(r, p, n);
        else
            add_raw_header(r, p, n);
    }
    const char *body = p != NULL && next != NULL ? next : text + text_len;
    r->body_len = (size_t)(text + text_len - body);
    r->body = dup_range(body, r->body_len);
    for (size_t i = 0; i < r->nheaders; i++)
        r->headers[i] = (jn_sigv4_header_t){r->names[i], r->values[i]};
}

static void free_request(struct raw_request *r)
{
    free(r->method);
    free(r->path);
    free(r->query);
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->names[i]);
        free(r->values[i]);
    }
    free(r->body);
}

static const char *raw_header(const struct raw_request *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->names[i], name) == 0)
            return r->values[i];
    return NULL;
}

/* ---- context.json -------------------------------------------------------- */

/* The value after "key": (keys are unique across the small documents read). */
static const char *json_value(const char *doc, const char *key)
{
    char quoted[128];
    snprintf(quoted, sizeof(quoted), "\"%s\"", key);
    for (const char *p = strstr(doc, quoted); p != NULL; p = strstr(p + 1, quoted)) {
        const char *v = p + strlen(quoted);
        v += strspn(v, " \t\r\n");
        if (*v != ':')
            continue;
        v++;
        return v + strspn(v, " \t\r\n");
    }
    return NULL;
}

/* Decodes a JSON string (ASCII \u escapes only); NULL when the key is absent. */
static char *json_string(const char *doc, const char *key)
{
    const char *p = json_value(doc, key);
    if (p == NULL)
        return NULL;
    assert_int_equal(*p, '"');
    char *out = malloc(strlen(p) + 1), *o = out;
    assert_non_null(out);
    for (p++; *p != '"'; p++) {
        assert_int_not_equal(*p, '\0');
        if (*p != '\\') {
            *o++ = *p;
            continue;
        }
        const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t", *k = strchr(from, *++p);
        if (*p == 'u') {
            unsigned v = 0;
            assert_int_equal(sscanf(p + 1, "%4x", &v), 1);
            assert_true(v > 0 && v < 0x80);
            *o++ = (char)v;
            p += 4;
            continue;
        }
        assert_true(*p != '\0' && k != NULL);
        *o++ = to[k - from];
    }
    *o = '\0';
    return out;
}

static int json_bool(const char *doc, const char *key, int def)
{
    const char *p = json_value(doc, key);
    if (p == NULL)
        return def;
    if (strncmp(p, "true", 4) == 0)
        return 1;
    assert_int_equal(strncmp(p, "false", 5), 0);
    return 0;
}

struct context {
    char *access_key_id;
    char *secret;
    char *token;
    char *region;
    char *service;
    int64_t time;
    unsigned flags;
};

/* "2015-08-30T12:36:00Z" to Unix seconds. */
static int64_t parse_iso8601(const char *s)
{
    struct tm tm = {0};
    char z = 0;
    assert_int_equal(sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                            &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &z),
                     7);
    assert_int_equal(z, 'Z');
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

static void parse_context(struct context *c, const char *doc)
{
    memset(c, 0, sizeof(*c));
    c->access_key_id = json_string(doc, "access_key_id");
    c->secret = json_string(doc, "secret_access_key");
    c->token = json_string(doc, "token");
    c->region = json_string(doc, "region");
    c->service = json_string(doc, "service");
    char *ts = json_string(doc, "timestamp");
    assert_true(c->access_key_id && c->secret && c->region && c->service && ts);
    c->time = parse_iso8601(ts);
    free(ts);
    c->flags = JN_SIGV4_DOUBLE_ENCODE;
    if (json_bool(doc, "normalize", 1))
        c->flags |= JN_SIGV4_NORMALIZE_PATH;
    if (json_bool(doc, "sign_body", 0))
        c->flags |= JN_SIGV4_CONTENT_SHA256;
    if (json_bool(doc, "omit_session_token", 0))
        c->flags |= JN_SIGV4_UNSIGNED_TOKEN;
}

static void free_context(struct context *c)
{
    free(c->access_key_id);
    free(c->secret);
    free(c->token);
    free(c->region);
    free(c->service);
}

/* ---- The published suite ------------------------------------------------- */

static int same(const char *name, const char *what, const char *got, const char *want)
{
    if (got != NULL && strcmp(got, want) == 0)
        return 1;
    print_message("%s: %s differs\n--- want\n%s\n--- got\n%s\n", name, what, want,
                  got != NULL ? got : "(null)");
    return 0;
}

/* Every header the signer adds appears, with the same value, in the published
 * signed request. */
static int same_added_headers(const char *dir, const char *name, const jn_sigv4_result_t *res)
{
    size_t len = 0;
    char *text = slurp_case(dir, name, "header-signed-request.txt", &len);
    struct raw_request signed_req;
    parse_request(&signed_req, text, len);
    int ok = 1;
    for (size_t i = 0; i < res->nadd; i++) {
        const char *want = raw_header(&signed_req, res->add[i].name);
        ok &= same(name, res->add[i].name, res->add[i].value, want != NULL ? want : "(absent)");
    }
    free_request(&signed_req);
    free(text);
    return ok;
}

static int run_case(const char *dir, const char *name)
{
    size_t len = 0;
    char *text = slurp_case(dir, name, "request.txt", &len);
    char *doc = slurp_case(dir, name, "context.json", NULL);
    char *creq = slurp_expected(dir, name, "header-canonical-request.txt");
    char *sts = slurp_expected(dir, name, "header-string-to-sign.txt");
    char *sig = slurp_expected(dir, name, "header-signature.txt");
    struct raw_request r;
    struct context c;
    parse_request(&r, text, len);
    parse_context(&c, doc);
    jn_sigv4_request_t req = {r.method,   r.path, r.query,    r.headers,
                              r.nheaders, r.body, r.body_len, NULL};
    jn_sigv4_params_t p = {c.region, c.service, c.access_key_id, c.secret, c.token, NULL,
                           c.time,   NULL,      c.flags};
    jn_sigv4_result_t res;
    char err[256] = "";
    int ok = jn_sigv4_sign(&req, &p, &res, err, sizeof(err)) == 0;
    if (!ok)
        print_message("%s: sign failed: %s\n", name, err);
    ok = ok && same(name, "canonical request", res.canonical_request, creq);
    ok = ok && same(name, "string to sign", res.string_to_sign, sts);
    ok = ok && same(name, "signature", res.signature, sig);
    ok = ok && same_added_headers(dir, name, &res);
    jn_sigv4_result_free(&res);
    free_context(&c);
    free_request(&r);
    free(sig);
    free(sts);
    free(creq);
    free(doc);
    free(text);
    return ok;
}

static void test_vectors(void **state)
{
    (void)state;
    char dir[4096];
    require_vectors(dir, sizeof(dir));
    size_t n = 0, passed = 0;
    char **names = list_cases(dir, &n);
    for (size_t i = 0; i < n; i++) {
        passed += run_case(dir, names[i]);
        free(names[i]);
    }
    free(names);
    print_message("aws-sigv4 header cases: %zu of %zu pass\n", passed, n);
    assert_true(n >= 38);
    assert_int_equal(passed, n);
}

/* ---- Unit tests ---------------------------------------------------------- */

struct fixture {
    jn_sigv4_header_t headers[4];
    jn_sigv4_request_t req;
    jn_sigv4_params_t params;
};

static void fixture_init(struct fixture *f)
{
    memset(f, 0, sizeof(*f));
    f->headers[0] = (jn_sigv4_header_t){"Host", "example.amazonaws.com"};
    f->headers[1] = (jn_sigv4_header_t){"Content-Type", "application/json"};
    f->headers[2] = (jn_sigv4_header_t){"X-Custom", "one"};
    f->headers[3] = (jn_sigv4_header_t){"User-Agent", "junction"};
    f->req = (jn_sigv4_request_t){"POST", "/", "", f->headers, 4, "{\"a\":1}", 7, NULL};
    f->params = (jn_sigv4_params_t){
        "us-east-1", "service",          "AKIDEXAMPLE",         SECRET, NULL, NULL,
        0,           "20150830T123600Z", JN_SIGV4_FLAGS_DEFAULT};
}

/* Signs and returns the signature (malloc'ed). */
static char *signature_of(const struct fixture *f)
{
    jn_sigv4_result_t res;
    char err[256] = "";
    int rc = jn_sigv4_sign(&f->req, &f->params, &res, err, sizeof(err));
    if (rc != 0)
        print_message("sign failed: %s\n", err);
    assert_int_equal(rc, 0);
    char *sig = strdup(res.signature);
    assert_non_null(sig);
    jn_sigv4_result_free(&res);
    return sig;
}

static void assert_changes(const struct fixture *f, const char *base)
{
    char *sig = signature_of(f);
    assert_string_not_equal(sig, base);
    free(sig);
}

static void test_one_byte_changes(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    char *base = signature_of(&f);

    f.req.payload = "{\"a\":2}";
    assert_changes(&f, base);
    fixture_init(&f);
    f.params.secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEZ";
    assert_changes(&f, base);
    fixture_init(&f);
    f.params.amz_date = "20150830T123601Z";
    assert_changes(&f, base);
    f.params.amz_date = "20150831T123600Z";
    assert_changes(&f, base);
    fixture_init(&f);
    f.headers[2].value = "onf";
    assert_changes(&f, base);
    fixture_init(&f);
    f.req.path = "/a";
    assert_changes(&f, base);
    fixture_init(&f);
    f.req.query = "a=1";
    assert_changes(&f, base);

    /* Unsigned headers and their spelling of whitespace leave it alone. */
    fixture_init(&f);
    f.headers[3].value = "curl/8";
    f.headers[2].value = "  one ";
    char *same_sig = signature_of(&f);
    assert_string_equal(same_sig, base);
    free(same_sig);
    free(base);
}

static void test_session_token(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    f.params.session_token = "FQoGZXIvYXdzEXAMPLETOKEN";
    jn_sigv4_result_t res;
    assert_int_equal(jn_sigv4_sign(&f.req, &f.params, &res, NULL, 0), 0);
    assert_int_equal(res.nadd, 3);
    assert_string_equal(res.add[0].name, "X-Amz-Date");
    assert_string_equal(res.add[1].name, "X-Amz-Security-Token");
    assert_string_equal(res.add[1].value, "FQoGZXIvYXdzEXAMPLETOKEN");
    assert_string_equal(res.add[2].name, "Authorization");
    assert_string_equal(res.signed_headers,
                        "content-type;host;x-amz-date;x-amz-security-token;x-custom");
    assert_non_null(
        strstr(res.canonical_request, "\nx-amz-security-token:FQoGZXIvYXdzEXAMPLETOKEN\n"));
    assert_non_null(strstr(res.authorization, "SignedHeaders=content-type;host;x-amz-date;"
                                              "x-amz-security-token;x-custom, Signature="));
    char *with = strdup(res.signature);
    jn_sigv4_result_free(&res);

    f.params.session_token = "FQoGZXIvYXdzEXAMPLETOKEM";
    assert_changes(&f, with);

    f.params.flags |= JN_SIGV4_UNSIGNED_TOKEN;
    assert_int_equal(jn_sigv4_sign(&f.req, &f.params, &res, NULL, 0), 0);
    assert_string_equal(res.signed_headers, "content-type;host;x-amz-date;x-custom");
    assert_string_equal(res.add[1].value, "FQoGZXIvYXdzEXAMPLETOKEM");
    jn_sigv4_result_free(&res);
    free(with);
}

static void test_signing_key(void **state)
{
    (void)state;
    uint8_t key[JN_SIGV4_KEY_LEN];
    char hex[2 * JN_SIGV4_KEY_LEN + 1];
    /* The derivation example in AWS's Signature Version 4 documentation. */
    assert_int_equal(jn_sigv4_signing_key(SECRET, "20120215", "us-east-1", "iam", key, NULL, 0), 0);
    for (size_t i = 0; i < sizeof(key); i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    assert_string_equal(hex, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");

    /* A cached key signs like the secret it came from. */
    struct fixture f;
    fixture_init(&f);
    char *base = signature_of(&f);
    assert_int_equal(jn_sigv4_signing_key(SECRET, "20150830", "us-east-1", "service", key, NULL, 0),
                     0);
    f.params.secret_access_key = NULL;
    f.params.signing_key = key;
    char *cached = signature_of(&f);
    assert_string_equal(cached, base);
    free(cached);
    free(base);

    char err[256];
    assert_int_equal(jn_sigv4_signing_key(SECRET, "2015083", "us-east-1", "s", key, err, 256), -1);
    assert_non_null(strstr(err, "bad date"));
    assert_int_equal(jn_sigv4_signing_key(SECRET, "20150230", "us-east-1", "s", key, err, 256), -1);
    assert_int_equal(jn_sigv4_signing_key(SECRET, "20160229", "us-east-1", "s", key, err, 256), 0);
    assert_int_equal(jn_sigv4_signing_key("", "20150830", "us-east-1", "s", key, err, 256), -1);
    assert_non_null(strstr(err, "secret"));
    assert_int_equal(jn_sigv4_signing_key(SECRET, "20150830", "us/east", "s", key, err, 256), -1);
}

static void test_dates(void **state)
{
    (void)state;
    char out[JN_SIGV4_AMZ_DATE_LEN + 1];
    assert_int_equal(jn_sigv4_amz_date(1440938160, out, NULL, 0), 0);
    assert_string_equal(out, "20150830T123600Z");
    assert_int_equal(jn_sigv4_amz_date(0, out, NULL, 0), 0);
    assert_string_equal(out, "19700101T000000Z");
    char err[256];
    assert_int_equal(jn_sigv4_amz_date(-1, out, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "bad date"));

    struct fixture f;
    fixture_init(&f);
    char *by_string = signature_of(&f);
    f.params.amz_date = NULL;
    f.params.time = 1440938160;
    char *by_time = signature_of(&f);
    assert_string_equal(by_string, by_time);
    free(by_string);
    free(by_time);
}

static void check_canonical(const struct fixture *f, const char *want_path, const char *want_query)
{
    jn_sigv4_result_t res;
    char err[256] = "";
    int rc = jn_sigv4_sign(&f->req, &f->params, &res, err, sizeof(err));
    if (rc != 0)
        print_message("sign failed: %s\n", err);
    assert_int_equal(rc, 0);
    const char *path = strchr(res.canonical_request, '\n') + 1;
    const char *query = strchr(path, '\n') + 1;
    size_t plen = (size_t)(query - 1 - path), qlen = strcspn(query, "\n");
    assert_int_equal(plen, strlen(want_path));
    assert_memory_equal(path, want_path, plen);
    assert_int_equal(qlen, strlen(want_query));
    assert_memory_equal(query, want_query, qlen);
    jn_sigv4_result_free(&res);
}

static void test_canonical_uri_and_query(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    f.req.path = "/my%20doc/a b/./c/../d//";
    f.req.query = "b=2&a=1&a=0&c&&x=%7e&y=~&z=a+b&%e1%88%b4=";
    const char *q = "%E1%88%B4=&a=0&a=1&b=2&c=&x=~&y=~&z=a%2Bb";
    check_canonical(&f, "/my%2520doc/a%20b/d/", q);
    f.params.flags = JN_SIGV4_DOUBLE_ENCODE;
    check_canonical(&f, "/my%2520doc/a%20b/./c/../d//", q);
    f.params.flags = JN_SIGV4_FLAGS_S3;
    check_canonical(&f, "/my%20doc/a%20b/./c/../d//", q);
    f.req.path = "/key%2Fwith%2fslash/%7E";
    check_canonical(&f, "/key%2Fwith%2Fslash/~", q);
    f.req.path = NULL;
    f.req.query = NULL;
    check_canonical(&f, "/", "");
    f.req.query = "a=b c&=e";
    check_canonical(&f, "/", "=e&a=b%20c");
    f.params.flags = JN_SIGV4_FLAGS_DEFAULT;
    f.req.path = "/a/b/../../..";
    check_canonical(&f, "/", "=e&a=b%20c");
}

static void test_payload_hash(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    f.params.flags = JN_SIGV4_FLAGS_S3;
    f.req.payload_hash = JN_SIGV4_UNSIGNED_PAYLOAD;
    jn_sigv4_result_t res;
    assert_int_equal(jn_sigv4_sign(&f.req, &f.params, &res, NULL, 0), 0);
    assert_int_equal(res.nadd, 3);
    assert_string_equal(res.add[1].name, "x-amz-content-sha256");
    assert_string_equal(res.add[1].value, "UNSIGNED-PAYLOAD");
    assert_non_null(strstr(res.canonical_request, "\nx-amz-content-sha256:UNSIGNED-PAYLOAD\n"));
    size_t n = strlen(res.canonical_request);
    assert_string_equal(res.canonical_request + n - 17, "\nUNSIGNED-PAYLOAD");
    jn_sigv4_result_free(&res);

    f.req.payload = NULL;
    f.req.payload_len = 0;
    f.req.payload_hash = NULL;
    assert_int_equal(jn_sigv4_sign(&f.req, &f.params, &res, NULL, 0), 0);
    assert_string_equal(res.content_sha256, EMPTY_SHA256);
    jn_sigv4_result_free(&res);

    f.req.payload_hash = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
    assert_int_equal(jn_sigv4_sign(&f.req, &f.params, &res, NULL, 0), 0);
    assert_string_equal(res.content_sha256, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
    jn_sigv4_result_free(&res);
    f.req.payload_hash = EMPTY_SHA256;
    f.params.flags = JN_SIGV4_FLAGS_DEFAULT;
    assert_int_equal(jn_sigv4_sign(&f.req, &f.params, &res, NULL, 0), 0);
    assert_null(res.content_sha256);
    assert_int_equal(res.nadd, 2);
    jn_sigv4_result_free(&res);
}

/* Signs expecting failure; the message must name `want` and never the secret. */
static void expect_error(const struct fixture *f, const char *want)
{
    jn_sigv4_result_t res;
    char err[256] = "";
    assert_int_equal(jn_sigv4_sign(&f->req, &f->params, &res, err, sizeof(err)), -1);
    if (strstr(err, want) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", err, want);
    assert_null(strstr(err, SECRET));
    assert_null(strstr(err, "SECRETTOKEN"));
    assert_null(res.canonical_request);
    assert_null(res.signature);
    assert_int_equal(res.nadd, 0);
    jn_sigv4_result_free(&res);
}

static void test_errors(void **state)
{
    (void)state;
    struct fixture f;
    jn_sigv4_header_t extra[5];

    fixture_init(&f);
    f.headers[0].name = "X-Host";
    expect_error(&f, "missing Host header");
    fixture_init(&f);
    memcpy(extra, f.headers, sizeof(f.headers));
    extra[4] = (jn_sigv4_header_t){"host", "other.example"};
    f.req.headers = extra;
    f.req.nheaders = 5;
    expect_error(&f, "more than one Host header");
    fixture_init(&f);
    f.headers[0].value = " ";
    expect_error(&f, "empty Host header");

    fixture_init(&f);
    const char *bad_dates[] = {"2015-08-30T12:36:00Z", "20150230T123600Z", "20150830T243600Z",
                               "20150830T123600",      "20150830t123600Z", ""};
    for (size_t i = 0; i < sizeof(bad_dates) / sizeof(bad_dates[0]); i++) {
        f.params.amz_date = bad_dates[i];
        expect_error(&f, "bad X-Amz-Date");
    }
    f.params.amz_date = NULL;
    f.params.time = -5;
    expect_error(&f, "bad date");

    fixture_init(&f);
    f.req.method = NULL;
    expect_error(&f, "method");
    f.req.method = "GE T";
    expect_error(&f, "method");

    fixture_init(&f);
    f.req.path = "relative";
    expect_error(&f, "must start with '/'");
    f.req.path = "/a?b=1";
    expect_error(&f, "pass the query separately");
    f.req.path = "/a\r\nb";
    expect_error(&f, "control character");
    f.req.path = "/bad%G1";
    f.params.flags = JN_SIGV4_FLAGS_S3;
    expect_error(&f, "bad percent-encoding in path");

    fixture_init(&f);
    const char *bad_queries[] = {"a=%zz", "a=%4", "%=1", "a=1&b=%"};
    for (size_t i = 0; i < sizeof(bad_queries) / sizeof(bad_queries[0]); i++) {
        f.req.query = bad_queries[i];
        expect_error(&f, "bad percent-encoding in query");
    }
    f.req.query = "a=1#frag";
    expect_error(&f, "must be encoded");
    f.req.query = "a=1\t";
    expect_error(&f, "must be encoded");

    fixture_init(&f);
    f.headers[2].name = "Bad Name";
    expect_error(&f, "header 2: invalid name");
    f.headers[2].name = "";
    expect_error(&f, "header 2: invalid name");
    fixture_init(&f);
    f.headers[2].value = "one\r\nInjected: yes";
    expect_error(&f, "header X-Custom");
    f.headers[2].value = NULL;
    expect_error(&f, "header X-Custom");
    fixture_init(&f);
    f.headers[2] = (jn_sigv4_header_t){"Authorization", "AWS4-HMAC-SHA256 old"};
    expect_error(&f, "Authorization is set by the signer");
    f.headers[2] = (jn_sigv4_header_t){"x-amz-date", "20150830T123600Z"};
    expect_error(&f, "pass amz_date");
    f.headers[2] = (jn_sigv4_header_t){"X-Amz-Security-Token", "SECRETTOKEN"};
    f.params.session_token = "SECRETTOKEN";
    expect_error(&f, "duplicates the session token");
    fixture_init(&f);
    f.headers[2] = (jn_sigv4_header_t){"X-Amz-Content-Sha256", EMPTY_SHA256};
    f.params.flags = JN_SIGV4_FLAGS_S3;
    expect_error(&f, "JN_SIGV4_CONTENT_SHA256");
    f.req.nheaders = 0;
    expect_error(&f, "missing Host header");
    f.req.nheaders = 2;
    f.req.headers = NULL;
    expect_error(&f, "headers is NULL");

    fixture_init(&f);
    f.params.region = NULL;
    expect_error(&f, "region");
    f.params.region = "us-east-1/x";
    expect_error(&f, "region");
    fixture_init(&f);
    f.params.service = "";
    expect_error(&f, "service");
    fixture_init(&f);
    f.params.access_key_id = "AKID/EXAMPLE";
    expect_error(&f, "access key id");
    fixture_init(&f);
    f.params.secret_access_key = NULL;
    expect_error(&f, "missing secret access key");
    fixture_init(&f);
    f.params.session_token = "SECRETTOKEN\n";
    expect_error(&f, "session token contains a control character");

    fixture_init(&f);
    f.req.payload_hash = "not-a-hash";
    expect_error(&f, "payload_hash");
    f.req.payload_hash = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
    expect_error(&f, "payload_hash");
    f.req.payload_hash = "";
    expect_error(&f, "payload_hash");
    f.req.payload_hash = NULL;
    f.req.payload = NULL;
    expect_error(&f, "payload is NULL");

    jn_sigv4_result_t res;
    assert_int_equal(jn_sigv4_sign(NULL, &f.params, &res, NULL, 0), -1);
    assert_int_equal(jn_sigv4_sign(&f.req, NULL, &res, NULL, 0), -1);
    assert_int_equal(jn_sigv4_sign(&f.req, &f.params, NULL, NULL, 0), -1);
    jn_sigv4_result_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),       cmocka_unit_test(test_one_byte_changes),
        cmocka_unit_test(test_session_token), cmocka_unit_test(test_signing_key),
        cmocka_unit_test(test_dates),         cmocka_unit_test(test_canonical_uri_and_query),
        cmocka_unit_test(test_payload_hash),  cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
