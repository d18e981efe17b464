/* Secret redaction: registered values plus secret-shaped patterns.
 *
 * Every detector only reports byte ranges of the input; the ranges are merged
 * and each merged range is replaced once. Merging instead of rewriting in
 * sequence makes the detectors independent of each other and means two
 * overlapping secrets can never leave a fragment of either behind (a superset
 * of "longest first").
 */
#include "junction/redact.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- Policy ------------------------------------------------------------- */

enum char_class { CC_ALNUM, CC_WORD, CC_SLUG, CC_UPPER_ALNUM };

/* Tokens recognised by their prefix; the whole token is replaced. */
struct prefix_rule {
    const char *prefix;
    enum char_class body;
    size_t min_len; /* of the body after the prefix */
    size_t max_len; /* 0: unbounded */
};

static const struct prefix_rule prefix_rules[] = {
    {"ghp_", CC_ALNUM, 30, 0},  {"gho_", CC_ALNUM, 30, 0},        {"ghu_", CC_ALNUM, 30, 0},
    {"ghs_", CC_ALNUM, 30, 0},  {"ghr_", CC_ALNUM, 30, 0},        {"github_pat_", CC_WORD, 20, 0},
    {"glpat-", CC_SLUG, 20, 0}, {"xoxb-", CC_SLUG, 8, 0},         {"xoxp-", CC_SLUG, 8, 0},
    {"xoxa-", CC_SLUG, 8, 0},   {"xoxr-", CC_SLUG, 8, 0},         {"xoxs-", CC_SLUG, 8, 0},
    {"xapp-", CC_SLUG, 8, 0},   {"AKIA", CC_UPPER_ALNUM, 16, 16}, {"ASIA", CC_UPPER_ALNUM, 16, 16},
};

/* Authorization schemes left in clear in front of the redacted credential. */
static const char *const auth_schemes[] = {
    "Bearer", "Basic", "Digest", "SSWS",      "token",
    "Bot",    "NTLM",  "ApiKey", "Negotiate", "AWS4-HMAC-SHA256",
};

/* Scheme words that mark a credential even outside an Authorization context.
 * The credential must look like one (see credential_shaped) so that prose
 * such as "the bearer of" is left alone. */
struct loose_rule {
    const char *word;
    int icase;
    size_t min_len;
};

static const struct loose_rule loose_rules[] = {
    {"Bearer", 1, 8},
    {"Basic", 0, 8},
    {"SSWS", 0, 8},
};

/* Names whose value is a credential, matched case-insensitively as a whole
 * name in `name=value`, `"name": value`, `'name': value`, `name: "value"`.
 * KEY_HEADER: also `Name: value` up to the end of the line.
 * KEY_SCHEME: the value may start with an auth scheme word, kept in clear.
 * KEY_SUFFIX: also matches as the last part of a longer name (db_password,
 *             X-Amz-Security-Token) after '_', '-' or '.'. */
enum { KEY_HEADER = 1, KEY_SCHEME = 2, KEY_SUFFIX = 4 };

struct key_rule {
    const char *name;
    unsigned flags;
};

static const struct key_rule key_rules[] = {
    {"password", KEY_SUFFIX},
    {"passwd", KEY_SUFFIX},
    {"secret", KEY_SUFFIX},
    {"client_secret", 0},
    {"token", KEY_SUFFIX},
    {"access_token", 0},
    {"refresh_token", 0},
    {"api_key", KEY_SUFFIX},
    {"apikey", KEY_SUFFIX},
    {"private_key", KEY_SUFFIX},
    {"secret_key", KEY_SUFFIX},
    {"secret_access_key", KEY_SUFFIX},
    {"passphrase", KEY_SUFFIX},
    {"signature", 0},
    {"x-amz-signature", 0},
    {"authorization", KEY_HEADER | KEY_SCHEME},
    {"proxy-authorization", KEY_HEADER | KEY_SCHEME},
    {"x-api-key", KEY_HEADER},
    {"api-key", KEY_HEADER | KEY_SUFFIX},
    {"dd-api-key", KEY_HEADER},
    {"dd-application-key", KEY_HEADER},
    {"private-token", KEY_HEADER},
    {"x-auth-token", KEY_HEADER},
    {"x-vault-token", KEY_HEADER},
    {"x-amz-security-token", KEY_HEADER},
    {"cookie", KEY_HEADER},
    {"set-cookie", KEY_HEADER},
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- Character classes (locale independent) ----------------------------- */

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int is_upper(unsigned char c)
{
    return c >= 'A' && c <= 'Z';
}

static int is_alpha(unsigned char c)
{
    return is_upper(c) || (c >= 'a' && c <= 'z');
}

static int is_alnum(unsigned char c)
{
    return is_alpha(c) || is_digit(c);
}

static int is_b64url(unsigned char c)
{
    return is_alnum(c) || c == '-' || c == '_';
}

static int in_set(unsigned char c, const char *set)
{
    return c != '\0' && strchr(set, c) != NULL;
}

/* RFC 7235 token68 */
static int is_token68(unsigned char c)
{
    return is_alnum(c) || in_set(c, "-._~+/");
}

static int is_name_char(unsigned char c)
{
    return is_alnum(c) || c == '_' || c == '-' || c == '.';
}

static int is_blank(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static int in_class(unsigned char c, enum char_class cc)
{
    switch (cc) {
    case CC_ALNUM:
        return is_alnum(c);
    case CC_WORD:
        return is_alnum(c) || c == '_';
    case CC_SLUG:
        return is_alnum(c) || c == '_' || c == '-';
    case CC_UPPER_ALNUM:
        return is_upper(c) || is_digit(c);
    }
    return 0;
}

static unsigned char lower(unsigned char c)
{
    return is_upper(c) ? (unsigned char)(c + ('a' - 'A')) : c;
}

static int equal_icase(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return 0;
    }
    return 1;
}

/* ---- Scanning state ----------------------------------------------------- */

struct span {
    size_t start, end;
};

/* A forward search from `from` stopped at `to`. Any later search for the same
 * stop condition starting in [from, to] stops at `to` too; remembering it keeps
 * a long line holding many keys linear instead of quadratic. */
struct memo {
    size_t from, to;
    int valid;
};

enum {
    MEMO_BARE,
    MEMO_HEADER,
    MEMO_HEADER_DQ,
    MEMO_HEADER_SQ,
    MEMO_PEM,
    MEMO_URL,
    MEMO_COLON,
    MEMO_N
};

struct scan {
    const char *s;
    size_t len;
    struct span *spans;
    size_t n, cap;
    int oom;
    struct memo memo[MEMO_N];
    size_t url_at; /* last '@' in the authority memo[MEMO_URL] covers, or SIZE_MAX */
};

static void add_span(struct scan *sc, size_t start, size_t end)
{
    if (start >= end || sc->oom)
        return;
    if (sc->n == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 16;
        struct span *v = realloc(sc->spans, cap * sizeof(*v));
        if (v == NULL) {
            sc->oom = 1;
            return;
        }
        sc->spans = v;
        sc->cap = cap;
    }
    sc->spans[sc->n].start = start;
    sc->spans[sc->n].end = end;
    sc->n++;
}

static unsigned char at(const struct scan *sc, size_t i)
{
    return i < sc->len ? (unsigned char)sc->s[i] : '\0';
}

static int has_prefix(const struct scan *sc, size_t i, const char *p, int icase)
{
    size_t n = strlen(p);
    if (n > sc->len - i)
        return 0;
    return icase ? equal_icase(sc->s + i, p, n) : memcmp(sc->s + i, p, n) == 0;
}

typedef int (*stop_fn)(const struct scan *sc, size_t i);

static size_t find_stop(struct scan *sc, int which, size_t i, stop_fn stop)
{
    struct memo *m = &sc->memo[which];
    if (m->valid && i >= m->from && i <= m->to)
        return m->to;
    size_t e = i;
    while (e < sc->len && !stop(sc, e))
        e++;
    *m = (struct memo){i, e, 1};
    return e;
}

static size_t skip_blanks(const struct scan *sc, size_t i)
{
    while (i < sc->len && is_blank(at(sc, i)))
        i++;
    return i;
}

/* Length of the auth scheme word at i plus the blanks after it, or 0. */
static size_t scheme_len(const struct scan *sc, size_t i)
{
    for (size_t k = 0; k < NELEM(auth_schemes); k++) {
        size_t n = strlen(auth_schemes[k]);
        if (has_prefix(sc, i, auth_schemes[k], 1) && is_blank(at(sc, i + n)))
            return skip_blanks(sc, i + n) - i;
    }
    return 0;
}

/* ---- Detectors ---------------------------------------------------------- */

static void detect_prefix(struct scan *sc, size_t i)
{
    if (i > 0 && (is_alnum(at(sc, i - 1)) || at(sc, i - 1) == '_'))
        return;
    for (size_t k = 0; k < NELEM(prefix_rules); k++) {
        const struct prefix_rule *r = &prefix_rules[k];
        if (at(sc, i) != (unsigned char)r->prefix[0] || !has_prefix(sc, i, r->prefix, 0))
            continue;
        size_t b = i + strlen(r->prefix), e = b;
        while (e < sc->len && in_class(at(sc, e), r->body))
            e++;
        if (e - b < r->min_len || (r->max_len && e - b > r->max_len) || is_alnum(at(sc, e)))
            continue;
        add_span(sc, i, e);
        return;
    }
}

static size_t b64url_run(const struct scan *sc, size_t i)
{
    size_t e = i;
    while (e < sc->len && is_b64url(at(sc, e)))
        e++;
    return e;
}

/* header.payload.signature, both JSON parts base64url of "{"..." (eyJ). */
static void detect_jwt(struct scan *sc, size_t i)
{
    if (!has_prefix(sc, i, "eyJ", 0))
        return;
    if (i > 0 && (is_b64url(at(sc, i - 1)) || at(sc, i - 1) == '.'))
        return;
    size_t e = b64url_run(sc, i);
    if (at(sc, e) != '.' || !has_prefix(sc, e + 1, "eyJ", 0))
        return;
    e = b64url_run(sc, e + 1);
    if (at(sc, e) != '.')
        return;
    add_span(sc, i, b64url_run(sc, e + 1));
}

static int pem_end(const struct scan *sc, size_t i)
{
    return has_prefix(sc, i, "-----END ", 0);
}

/* Keeps the BEGIN/END lines; an unterminated block is redacted to the end. */
static void detect_pem(struct scan *sc, size_t i)
{
    static const char begin[] = "-----BEGIN ", dashes[] = "-----", label[] = "PRIVATE KEY";
    if (!has_prefix(sc, i, begin, 0))
        return;
    size_t e = i + sizeof(begin) - 1;
    while (e < sc->len && at(sc, e) != '\n' && !has_prefix(sc, e, dashes, 0))
        e++;
    size_t lab = sizeof(label) - 1;
    if (!has_prefix(sc, e, dashes, 0) || e - i < lab || memcmp(sc->s + e - lab, label, lab) != 0)
        return;
    size_t body = e + sizeof(dashes) - 1;
    add_span(sc, body, find_stop(sc, MEMO_PEM, body, pem_end));
}

/* Real credentials carry digits, symbols or inner capitals; prose words do not. */
static int credential_shaped(const char *s, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        if (!is_alpha(c) || (k > 0 && is_upper(c)))
            return 1;
    }
    return 0;
}

static void detect_loose_scheme(struct scan *sc, size_t i)
{
    if (i > 0 && is_name_char(at(sc, i - 1)))
        return;
    for (size_t k = 0; k < NELEM(loose_rules); k++) {
        const struct loose_rule *r = &loose_rules[k];
        size_t w = strlen(r->word);
        if (lower(at(sc, i)) != lower((unsigned char)r->word[0]) ||
            !has_prefix(sc, i, r->word, r->icase) || !is_blank(at(sc, i + w)))
            continue;
        size_t b = skip_blanks(sc, i + w), e = b;
        while (e < sc->len && is_token68(at(sc, e)))
            e++;
        while (e < sc->len && at(sc, e) == '=')
            e++;
        if (e - b >= r->min_len && credential_shaped(sc->s + b, e - b))
            add_span(sc, b, e);
        return;
    }
}

static int authority_end(const struct scan *sc, size_t i)
{
    return in_set(at(sc, i), "/?#\"'<> \t\r\n\\");
}

static int is_colon(const struct scan *sc, size_t i)
{
    return at(sc, i) == ':';
}

/* scheme://user:password@host */
static void detect_url_userinfo(struct scan *sc, size_t i)
{
    if (!has_prefix(sc, i, "://", 0))
        return;
    size_t b = i + 3, e = find_stop(sc, MEMO_URL, b, authority_end);
    if (sc->memo[MEMO_URL].from == b) {
        sc->url_at = SIZE_MAX;
        for (size_t k = e; k > b && sc->url_at == SIZE_MAX; k--) {
            if (at(sc, k - 1) == '@')
                sc->url_at = k - 1;
        }
    }
    if (sc->url_at == SIZE_MAX || sc->url_at < b)
        return;
    size_t colon = find_stop(sc, MEMO_COLON, b, is_colon);
    if (colon < sc->url_at)
        add_span(sc, colon + 1, sc->url_at);
}

static const struct key_rule *find_key_rule(const char *name, size_t n)
{
    for (size_t k = 0; k < NELEM(key_rules); k++) {
        if (strlen(key_rules[k].name) == n && equal_icase(name, key_rules[k].name, n))
            return &key_rules[k];
    }
    for (size_t k = 0; k < NELEM(key_rules); k++) {
        size_t m = strlen(key_rules[k].name);
        if (!(key_rules[k].flags & KEY_SUFFIX) || m >= n || !strchr("_-.", name[n - m - 1]))
            continue;
        if (equal_icase(name + n - m, key_rules[k].name, m))
            return &key_rules[k];
    }
    return NULL;
}

/* Quote opening at i: 1 for " or ', 2 for \" (JSON inside a JSON string), else 0. */
static size_t quote_len(const struct scan *sc, size_t i)
{
    if (at(sc, i) == '"' || at(sc, i) == '\'')
        return 1;
    return at(sc, i) == '\\' && at(sc, i + 1) == '"' ? 2 : 0;
}

/* Content of the quoted value opening at v (quote length q) as a span. */
static void redact_quoted(struct scan *sc, size_t v, size_t q, unsigned flags)
{
    unsigned char quote = at(sc, v + q - 1);
    size_t b = v + q, e = b;
    while (e < sc->len) {
        if (q == 2 && has_prefix(sc, e, "\\\"", 0))
            break;
        if (q == 1 && at(sc, e) == quote)
            break;
        e += (q == 1 && at(sc, e) == '\\') ? 2 : 1;
    }
    if (e > sc->len)
        e = sc->len;
    if (flags & KEY_SCHEME)
        b += scheme_len(sc, b);
    add_span(sc, b < e ? b : e, e);
}

static int bare_end(const struct scan *sc, size_t i)
{
    return in_set(at(sc, i), " \t\r\n&\"',;)}]<>\\");
}

static void redact_bare(struct scan *sc, size_t v, unsigned flags, int json)
{
    if (flags & KEY_SCHEME)
        v += scheme_len(sc, v);
    size_t e = find_stop(sc, MEMO_BARE, v, bare_end);
    if (json && ((e - v == 4 && (!memcmp(sc->s + v, "null", 4) || !memcmp(sc->s + v, "true", 4))) ||
                 (e - v == 5 && !memcmp(sc->s + v, "false", 5))))
        return;
    add_span(sc, v, e);
}

static int header_end(const struct scan *sc, size_t i)
{
    return in_set(at(sc, i), "\r\n\\");
}

static int header_end_dq(const struct scan *sc, size_t i)
{
    return header_end(sc, i) || at(sc, i) == '"';
}

static int header_end_sq(const struct scan *sc, size_t i)
{
    return header_end(sc, i) || at(sc, i) == '\'';
}

/* `Name: value` to the end of the line; inside a quoted string, to its end. */
static void redact_header(struct scan *sc, size_t v, unsigned flags, unsigned char quote)
{
    if (flags & KEY_SCHEME)
        v += scheme_len(sc, v);
    size_t e = quote == '"'    ? find_stop(sc, MEMO_HEADER_DQ, v, header_end_dq)
               : quote == '\'' ? find_stop(sc, MEMO_HEADER_SQ, v, header_end_sq)
                               : find_stop(sc, MEMO_HEADER, v, header_end);
    add_span(sc, v, e);
}

static void detect_key_value(struct scan *sc, size_t i)
{
    if (!is_name_char(at(sc, i)) || (i > 0 && is_name_char(at(sc, i - 1))))
        return;
    size_t e = i;
    while (e < sc->len && is_name_char(at(sc, e)))
        e++;
    const struct key_rule *rule = find_key_rule(sc->s + i, e - i);
    if (rule == NULL)
        return;

    /* Opening quote before the name: ", ' or \" */
    size_t q = 0;
    if (i > 0 && (at(sc, i - 1) == '"' || at(sc, i - 1) == '\''))
        q = (at(sc, i - 1) == '"' && i > 1 && at(sc, i - 2) == '\\') ? 2 : 1;
    unsigned char quote = q ? at(sc, i - 1) : 0;
    int key_quoted = q && quote_len(sc, e) == q && at(sc, e + q - 1) == quote;
    if (key_quoted) {
        e += q;
        if (at(sc, e) == ']')
            e++;
    }

    size_t sep = skip_blanks(sc, e);
    if (at(sc, sep) != '=' && at(sc, sep) != ':')
        return;
    size_t v = skip_blanks(sc, sep + 1);
    int spaced = sep != e || v != sep + 1;
    if (key_quoted && at(sc, v) == '[')
        v = skip_blanks(sc, v + 1);

    size_t vq = quote_len(sc, v);
    if (vq)
        redact_quoted(sc, v, vq, rule->flags);
    else if (key_quoted)
        redact_bare(sc, v, rule->flags, 1);
    else if (at(sc, sep) == ':' && (rule->flags & KEY_HEADER))
        redact_header(sc, v, rule->flags, quote);
    else if (at(sc, sep) == '=' && !spaced)
        redact_bare(sc, v, rule->flags, 0);
}

typedef void (*detector_fn)(struct scan *sc, size_t i);

static const detector_fn detectors[] = {
    detect_prefix,       detect_jwt,          detect_pem,
    detect_loose_scheme, detect_url_userinfo, detect_key_value,
};

/* ---- Redactor ----------------------------------------------------------- */

/* Known secrets are found in one pass over the text, whatever their number:
 * every secret is at least 4 bytes, so an index of their first 4 bytes
 * (chained hash buckets, at most half full) names the candidates at each
 * position. One memmem pass per secret, as before, cost 34 ms per MB of a
 * provider's response with 1,000 secrets registered; the index, 1.4 ms
 * with 1,000 or 10,000. A handful is still searched that way, memmem being
 * faster per byte (58 us per MB with one secret). */
#define LINEAR_MAX 16
#define NONE UINT32_MAX

struct secret {
    char *value;
    size_t len;
    unsigned refs;   /* registrations; wiped when the last one is removed */
    uint32_t prefix; /* the first 4 bytes */
    uint32_t next;   /* the next secret of its bucket, or NONE */
};

struct jn_redactor {
    pthread_rwlock_t lock;
    struct secret *secrets;
    size_t n, cap;
    uint32_t *heads; /* 2^bits buckets, each the first secret or NONE */
    unsigned bits;
};

jn_redactor_t *jn_redactor_create(void)
{
    jn_redactor_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    if (pthread_rwlock_init(&r->lock, NULL) != 0) {
        free(r);
        return NULL;
    }
    return r;
}

static void wipe_secret(struct secret *s)
{
    OPENSSL_cleanse(s->value, s->len);
    free(s->value);
    s->value = NULL;
    s->len = 0;
}

void jn_redactor_destroy(jn_redactor_t *r)
{
    if (r == NULL)
        return;
    for (size_t k = 0; k < r->n; k++)
        wipe_secret(&r->secrets[k]);
    if (r->secrets != NULL)
        OPENSSL_cleanse(r->secrets, r->n * sizeof(*r->secrets)); /* the prefixes */
    free(r->secrets);
    free(r->heads);
    pthread_rwlock_destroy(&r->lock);
    free(r);
}

static uint32_t load32(const char *p)
{
    uint32_t w;
    memcpy(&w, p, sizeof(w));
    return w;
}

static uint32_t bucket_of(const jn_redactor_t *r, uint32_t prefix)
{
    return (uint32_t)((prefix * 2654435761u) >> (32 - r->bits));
}

static void link_secret(jn_redactor_t *r, uint32_t k)
{
    uint32_t b = bucket_of(r, r->secrets[k].prefix);
    r->secrets[k].next = r->heads[b];
    r->heads[b] = k;
}

static void unlink_secret(jn_redactor_t *r, uint32_t k)
{
    uint32_t *at = &r->heads[bucket_of(r, r->secrets[k].prefix)];
    while (*at != k)
        at = &r->secrets[*at].next;
    *at = r->secrets[k].next;
}

/* Room in the index for one more secret: at most half the buckets used. */
static int index_reserve(jn_redactor_t *r)
{
    unsigned bits = r->bits ? r->bits : 6;

    while ((r->n + 1) * 2 > (size_t)1 << bits)
        bits++;
    if (bits == r->bits)
        return 0;
    uint32_t *heads = malloc(((size_t)1 << bits) * sizeof(*heads));
    if (heads == NULL)
        return -1;
    for (size_t b = 0; b < (size_t)1 << bits; b++)
        heads[b] = NONE;
    free(r->heads);
    r->heads = heads;
    r->bits = bits;
    for (size_t k = 0; k < r->n; k++)
        link_secret(r, (uint32_t)k);
    return 0;
}

static struct secret *find_secret(jn_redactor_t *r, const char *secret, size_t len)
{
    if (r->heads == NULL)
        return NULL;
    for (uint32_t k = r->heads[bucket_of(r, load32(secret))]; k != NONE; k = r->secrets[k].next) {
        if (r->secrets[k].len == len && memcmp(r->secrets[k].value, secret, len) == 0)
            return &r->secrets[k];
    }
    return NULL;
}

static int append_secret(jn_redactor_t *r, const char *secret, size_t len)
{
    if (r->n == r->cap) {
        /* moved by hand, not realloc'ed: the old block's prefixes are wiped */
        size_t cap = r->cap ? r->cap * 2 : 8;
        struct secret *v = malloc(cap * sizeof(*v));
        if (v == NULL)
            return -1;
        if (r->n > 0) {
            memcpy(v, r->secrets, r->n * sizeof(*v));
            OPENSSL_cleanse(r->secrets, r->n * sizeof(*v));
        }
        free(r->secrets);
        r->secrets = v;
        r->cap = cap;
    }
    if (r->n >= NONE || index_reserve(r) != 0)
        return -1;
    char *copy = malloc(len);
    if (copy == NULL)
        return -1;
    memcpy(copy, secret, len);
    r->secrets[r->n] = (struct secret){copy, len, 1, load32(secret), NONE};
    link_secret(r, (uint32_t)r->n++);
    return 0;
}

int jn_redactor_add_secret(jn_redactor_t *r, const char *secret, size_t len)
{
    if (r == NULL || secret == NULL || len < 4)
        return 0;
    pthread_rwlock_wrlock(&r->lock);
    struct secret *s = find_secret(r, secret, len);
    int rc = 0;
    if (s != NULL)
        s->refs++;
    else
        rc = append_secret(r, secret, len);
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

void jn_redactor_remove_secret(jn_redactor_t *r, const char *secret, size_t len)
{
    if (r == NULL || secret == NULL || len < 4)
        return;
    pthread_rwlock_wrlock(&r->lock);
    struct secret *s = find_secret(r, secret, len);
    if (s != NULL && --s->refs == 0) {
        uint32_t k = (uint32_t)(s - r->secrets), last = (uint32_t)(r->n - 1);
        unlink_secret(r, k);
        wipe_secret(s);
        if (k != last) { /* the last one moves into the hole */
            unlink_secret(r, last);
            r->secrets[k] = r->secrets[last];
            link_secret(r, k);
        }
        r->n--;
        OPENSSL_cleanse(&r->secrets[r->n], sizeof(r->secrets[r->n])); /* its prefix */
    }
    pthread_rwlock_unlock(&r->lock);
}

static void find_known(jn_redactor_t *r, struct scan *sc)
{
    pthread_rwlock_rdlock(&r->lock);
    if (r->n <= LINEAR_MAX) {
        for (size_t k = 0; k < r->n; k++) {
            const struct secret *s = &r->secrets[k];
            const char *p = sc->s, *end = sc->s + sc->len;
            while ((p = memmem(p, (size_t)(end - p), s->value, s->len)) != NULL) {
                size_t off = (size_t)(p - sc->s);
                add_span(sc, off, off + s->len);
                p++;
            }
        }
    } else {
        for (size_t i = 0; i + 4 <= sc->len; i++) {
            uint32_t w = load32(sc->s + i);
            for (uint32_t k = r->heads[bucket_of(r, w)]; k != NONE; k = r->secrets[k].next) {
                const struct secret *s = &r->secrets[k];
                if (s->prefix == w && s->len <= sc->len - i &&
                    memcmp(sc->s + i + 4, s->value + 4, s->len - 4) == 0)
                    add_span(sc, i, i + s->len);
            }
        }
    }
    pthread_rwlock_unlock(&r->lock);
}

static int span_cmp(const void *a, const void *b)
{
    const struct span *x = a, *y = b;
    return (x->start > y->start) - (x->start < y->start);
}

/* Merges overlapping spans in place; returns the new count. */
static size_t merge_spans(struct span *v, size_t n)
{
    size_t m = 0;
    qsort(v, n, sizeof(*v), span_cmp);
    for (size_t k = 0; k < n; k++) {
        if (m > 0 && v[k].start < v[m - 1].end) {
            if (v[k].end > v[m - 1].end)
                v[m - 1].end = v[k].end;
        } else {
            v[m++] = v[k];
        }
    }
    return m;
}

static char *rewrite(const struct scan *sc, size_t n)
{
    const size_t rlen = sizeof(JN_REDACTED) - 1;
    char *out = malloc(sc->len + n * rlen + 1), *o = out;
    if (out == NULL)
        return NULL;
    size_t pos = 0;
    for (size_t k = 0; k < n; k++) {
        memcpy(o, sc->s + pos, sc->spans[k].start - pos);
        o += sc->spans[k].start - pos;
        memcpy(o, JN_REDACTED, rlen);
        o += rlen;
        pos = sc->spans[k].end;
    }
    memcpy(o, sc->s + pos, sc->len - pos);
    o[sc->len - pos] = '\0';
    return out;
}

/* Without memory we cannot tell what is secret; returning the input would
 * leak it, so the whole text is replaced. */
static char *fail_closed(void)
{
    char *out = strdup(JN_REDACTED);
    if (out == NULL)
        abort();
    return out;
}

char *jn_redactor_scrub(jn_redactor_t *r, const char *in, size_t len)
{
    if (in == NULL)
        return NULL;
    struct scan sc = {.s = in, .len = len};
    if (r != NULL)
        find_known(r, &sc);
    for (size_t i = 0; i < len && !sc.oom; i++) {
        for (size_t k = 0; k < NELEM(detectors); k++)
            detectors[k](&sc, i);
    }
    char *out = NULL;
    if (sc.oom)
        out = fail_closed();
    else if (sc.n > 0 && (out = rewrite(&sc, merge_spans(sc.spans, sc.n))) == NULL)
        out = fail_closed();
    free(sc.spans);
    return out;
}

char *jn_redactor_scrub_known(jn_redactor_t *r, const char *in, size_t len, size_t *out_len)
{
    const size_t rlen = sizeof(JN_REDACTED) - 1;
    struct scan sc = {.s = in, .len = len};
    char *out = NULL;
    size_t n, kept = len;

    if (in == NULL || r == NULL)
        return NULL;
    find_known(r, &sc);
    if (sc.oom) {
        out = fail_closed();
        kept = strlen(out);
    } else if (sc.n > 0) {
        n = merge_spans(sc.spans, sc.n);
        for (size_t k = 0; k < n; k++)
            kept = kept - (sc.spans[k].end - sc.spans[k].start) + rlen;
        if ((out = rewrite(&sc, n)) == NULL) {
            out = fail_closed();
            kept = strlen(out);
        }
    }
    free(sc.spans);
    if (out != NULL && out_len != NULL)
        *out_len = kept;
    return out;
}

char *jn_redactor_scrub_dup(jn_redactor_t *r, const char *in, size_t len)
{
    if (in == NULL)
        return NULL;
    char *out = jn_redactor_scrub(r, in, len);
    if (out != NULL)
        return out;
    if ((out = malloc(len + 1)) == NULL)
        return NULL;
    memcpy(out, in, len);
    out[len] = '\0';
    return out;
}

int jn_redact_is_sensitive_key(const char *name, size_t len)
{
    return name != NULL && len > 0 && find_key_rule(name, len) != NULL;
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static jn_redactor_t *global_redactor;

static void global_init(void)
{
    global_redactor = jn_redactor_create();
}

jn_redactor_t *jn_redactor_global(void)
{
    pthread_once(&global_once, global_init);
    return global_redactor;
}

char *jn_redact_log_hook(void *ud, const char *in, size_t len)
{
    return jn_redactor_scrub(ud != NULL ? ud : jn_redactor_global(), in, len);
}
