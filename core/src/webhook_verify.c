/* Webhook verification: one request against a parsed scheme and the
 * integration's secrets. No I/O.
 *
 * Order of the checks, and why:
 *  1. A handshake that is answered without authentication (Microsoft Graph's
 *     validationToken) is recognised first: it carries no credential.
 *  2. Anything else must be a POST.
 *  3. Authentication: signature, token or JWT. Secrets are compared only
 *     through CRYPTO_memcmp on equal-length values (HMAC outputs, or SHA-256
 *     digests of tokens), so timing reveals neither a secret nor its length.
 *  4. The replay window, after the signature: a stale but authentic delivery
 *     is then told apart from a forgery (a clock problem to alert on, not an
 *     attack), and a timestamp in the body is only read once it is signed.
 *  5. An authenticated handshake (Slack, Okta, Event Grid) is answered.
 *  6. Delivery id and event type are read for dedup and routing.
 * Messages quote header names and counts, never a value the request sent
 * nor anything derived from a secret. The only state shared between calls is
 * the keyless HMAC templates below, made once per process, and the caller's
 * prepared keys when it passes a key cache (webhook_hmac.c).
 */
#include "junction/webhook.h"
#include "junction/crypto.h"
#include "junction/error.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "webhook_internal.h"

/* 9999-12-31T23:59:59.999Z in milliseconds. */
#define NOW_MS_MAX INT64_C(253402300799999)
#define JWT_MAX_LEN 16384
#define JWT_MAX_KEYS 64

/* A value read from the request: a view into it, or a decoded copy. */
typedef struct {
    const char *p;
    size_t n;
    char *owned; /* wiped and freed by val_free */
} val_t;

typedef struct {
    const jn_webhook_scheme_t *s;
    const jn_webhook_request_t *req;
    const jn_webhook_secrets_t *sec;
    jn_webhook_result_t *out;
    jn_json_t *body; /* parsed on first use */
    int body_tried;
    int body_status;
} vctx_t;

typedef struct {
    unsigned alg;
    uint8_t mac[64];
} candidate_t;

static void val_free(val_t *v)
{
    if (v->owned != NULL) {
        OPENSSL_cleanse(v->owned, v->n);
        free(v->owned);
    }
    memset(v, 0, sizeof(*v));
}

static void key_free(wh_key_t *k)
{
    if (k->owned != NULL) {
        OPENSSL_cleanse(k->owned, k->owned_len);
        free(k->owned);
    }
    memset(k, 0, sizeof(*k));
}

__attribute__((format(printf, 3, 4))) static int reject(vctx_t *c, int reason, const char *fmt, ...)
{
    va_list ap;
    c->out->verdict = JN_WEBHOOK_REJECTED;
    c->out->reason = reason;
    c->out->status = jn_webhook_reason_status(reason);
    va_start(ap, fmt);
    vsnprintf(c->out->message, sizeof(c->out->message), fmt, ap);
    va_end(ap);
    return reason;
}

/* A length of 0 means NUL-terminated. */
static size_t slen(const char *s, size_t n)
{
    return n != 0 || s == NULL ? n : strlen(s);
}

static int is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

static void trim(const char **p, size_t *n)
{
    while (*n > 0 && is_ows(**p))
        (*p)++, (*n)--;
    while (*n > 0 && is_ows((*p)[*n - 1]))
        (*n)--;
}

/* A NUL-terminated copy of n bytes that need not be terminated. */
static char *memdup_str(const char *p, size_t n)
{
    char *out = malloc(n + 1);
    if (out != NULL) {
        memcpy(out, p, n);
        out[n] = '\0';
    }
    return out;
}

/* ---- Reading the request ----------------------------------------------- */

/* 1 found (value trimmed), 0 absent, or JN_WEBHOOK_EDUPLICATE. A header sent
 * twice is refused rather than guessed at: two parsers that pick different
 * copies are how checks get bypassed. */
static int header_find(vctx_t *c, const char *name, val_t *v)
{
    size_t want = strlen(name);
    int found = 0;
    memset(v, 0, sizeof(*v));
    for (size_t i = 0; i < c->req->header_count; i++) {
        const jn_webhook_header_t *h = &c->req->headers[i];
        if (h->name == NULL || slen(h->name, h->name_len) != want ||
            strncasecmp(h->name, name, want) != 0)
            continue;
        if (found++)
            return reject(c, JN_WEBHOOK_EDUPLICATE, "header %s appears more than once", name);
        v->p = h->value != NULL ? h->value : "";
        v->n = h->value != NULL ? slen(h->value, h->value_len) : 0;
    }
    if (found)
        trim(&v->p, &v->n);
    return found;
}

/* Percent-decoding as browsers and URLSearchParams do it: '+' is a space and
 * a '%' without two hex digits stays as it is, so decoding never fails. */
static size_t pct_decode(const char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (in[i] == '%' && i + 2 < n && (hi = jn_hex_value((unsigned char)in[i + 1])) >= 0 &&
            (lo = jn_hex_value((unsigned char)in[i + 2])) >= 0) {
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = in[i] == '+' ? ' ' : in[i];
        }
    }
    return o;
}

/* Like header_find, for a query parameter (decoded into an owned copy). */
static int query_find(vctx_t *c, const char *name, val_t *v)
{
    const char *q = c->req->query;
    size_t want = strlen(name);
    int found = 0;
    char key[3 * 64];

    memset(v, 0, sizeof(*v));
    while (q != NULL && *q != '\0') {
        const char *amp = strchr(q, '&');
        size_t plen = amp != NULL ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', plen);
        size_t klen = eq != NULL ? (size_t)(eq - q) : plen;
        if (klen <= sizeof(key) && pct_decode(q, klen, key) == want &&
            memcmp(key, name, want) == 0) {
            if (found++) {
                val_free(v);
                return reject(c, JN_WEBHOOK_EDUPLICATE, "query parameter %s appears more than once",
                              name);
            }
            const char *raw = eq != NULL ? eq + 1 : q + plen;
            size_t rlen = plen - (size_t)(raw - q);
            if ((v->owned = malloc(rlen + 1)) == NULL)
                return reject(c, JN_WEBHOOK_ENOMEM, "out of memory");
            v->n = pct_decode(raw, rlen, v->owned);
            v->owned[v->n] = '\0';
            v->p = v->owned;
        }
        q = amp != NULL ? amp + 1 : NULL;
    }
    return found;
}

/* The body as JSON, parsed once, within limits the body's own size sets (a
 * JSON value takes at least one byte). NULL when the body is not JSON. */
static const jn_json_t *body_json(vctx_t *c)
{
    if (!c->body_tried) {
        c->body_tried = 1;
        c->body_status = JN_JSON_EEOF;
        if (c->req->body_len > 0) {
            jn_json_limits_t limits = {c->req->body_len, c->req->body_len + 1, 64};
            c->body_status = jn_json_parse(c->req->body, c->req->body_len, &limits, &c->body, NULL);
        }
    }
    return c->body;
}

static const jn_json_t *json_walk(const jn_json_t *node, char *const *segs, size_t n)
{
    for (size_t i = 0; i < n && node != NULL; i++) {
        const char *seg = segs[i];
        size_t len = strlen(seg);
        if (jn_json_is_object(node)) {
            node = jn_json_getn(node, seg, len);
        } else if (jn_json_is_array(node) && len <= 6 && strspn(seg, "0123456789") == len) {
            node = jn_json_at(node, (size_t)strtoul(seg, NULL, 10));
        } else {
            return NULL;
        }
    }
    return node;
}

/* A string's bytes, or a number's source text; NULL for other types and for
 * strings holding NUL. */
static const char *json_scalar(const jn_json_t *node, size_t *n)
{
    const char *s = jn_json_string(node, n);
    if (s != NULL)
        return strlen(s) == *n ? s : NULL;
    return jn_json_number_text(node, n);
}

/* The value of a source: 1 found, 0 absent, or a negative reason (recorded). */
static int source_get(vctx_t *c, const wh_source_t *src, val_t *v)
{
    memset(v, 0, sizeof(*v));
    switch (src->kind) {
    case WH_SRC_HEADER:
        return header_find(c, src->name, v);
    case WH_SRC_QUERY:
        return query_find(c, src->name, v);
    case WH_SRC_JSON: {
        const jn_json_t *root = body_json(c);
        if (root == NULL && c->body_status == JN_JSON_ENOMEM)
            return reject(c, JN_WEBHOOK_ENOMEM, "out of memory parsing the body");
        v->p = json_scalar(json_walk(root, src->segs, src->nsegs), &v->n);
        return v->p != NULL;
    }
    default:
        return 0;
    }
}

/* "header X", "query parameter x", "body member a.b": for messages. */
static const char *source_desc(const wh_source_t *src, char *buf, size_t len)
{
    static const char *const kinds[] = {"", "header", "query parameter", "body member"};
    snprintf(buf, len, "%s %s", kinds[src->kind], src->name);
    return buf;
}

/* ---- Secrets ----------------------------------------------------------- */

static int secret_decode(int encoding, const jn_webhook_secret_t *in, size_t idx, size_t count,
                         wh_key_t *k, char *err, size_t errlen)
{
    static const char *const names[] = {"raw", "hex", "base64", "whsec"};
    const char *p = in->data;
    size_t n = in->len;
    int ok = 1;

    memset(k, 0, sizeof(*k));
    if (p == NULL || n == 0 || n > JN_WEBHOOK_MAX_SECRET_LEN) {
        snprintf(err, errlen, "secret %zu of %zu is empty or longer than %d bytes", idx + 1, count,
                 JN_WEBHOOK_MAX_SECRET_LEN);
        return -1;
    }
    switch (encoding) {
    case WH_SECRET_RAW:
        k->p = (const uint8_t *)p;
        k->n = n;
        return 0;
    case WH_SECRET_HEX:
        if ((k->owned = malloc(n / 2 + 1)) == NULL)
            goto nomem;
        k->owned_len = n / 2 + 1;
        ok = jn_hex_decode(p, n, k->owned) > 0;
        k->n = n / 2;
        break;
    case WH_SECRET_WHSEC:
        if (n > 6 && memcmp(p, "whsec_", 6) == 0)
            p += 6, n -= 6;
        /* fall through */
    default: {
        size_t dlen = 0;
        if (jn_base64_decode(p, n, &k->owned, &dlen) < 0) {
            ok = 0;
            break;
        }
        k->owned_len = dlen + 1;
        k->n = dlen;
        ok = dlen > 0;
        break;
    }
    }
    if (!ok) {
        key_free(k);
        snprintf(err, errlen, "secret %zu of %zu is not valid %s%s", idx + 1, count,
                 names[encoding],
                 encoding == WH_SECRET_WHSEC ? " (base64, after an optional whsec_ prefix)" : "");
        return -1;
    }
    k->p = k->owned;
    return 0;
nomem:
    snprintf(err, errlen, "out of memory");
    return -1;
}

static int secrets_count_ok(const jn_webhook_secrets_t *sec, char *err, size_t errlen)
{
    if (sec->secret_count == 0 || sec->secrets == NULL) {
        snprintf(err, errlen, "the integration has no webhook secret");
        return 0;
    }
    if (sec->secret_count > JN_WEBHOOK_MAX_SECRETS) {
        snprintf(err, errlen, "the integration has %zu webhook secrets; at most %d are accepted",
                 sec->secret_count, JN_WEBHOOK_MAX_SECRETS);
        return 0;
    }
    return 1;
}

/* Decodes every secret (keys[] must hold JN_WEBHOOK_MAX_SECRETS). */
static int secrets_decode(const jn_webhook_scheme_t *s, const jn_webhook_secrets_t *sec,
                          wh_key_t *keys, char *err, size_t errlen)
{
    int encoding = s->kind == WH_KIND_HMAC ? s->secret_encoding : WH_SECRET_RAW;
    if (!secrets_count_ok(sec, err, errlen))
        return -1;
    for (size_t i = 0; i < sec->secret_count; i++) {
        if (secret_decode(encoding, &sec->secrets[i], i, sec->secret_count, &keys[i], err, errlen) <
            0) {
            while (i > 0)
                key_free(&keys[--i]);
            return -1;
        }
    }
    return 0;
}

/* ---- hmac -------------------------------------------------------------- */

/* Decimal digits only: what every provider sends, and what was signed. */
static int parse_timestamp(const val_t *v, int64_t max, int64_t *out)
{
    int64_t t = 0;
    if (v->n == 0 || v->n > 16)
        return -1;
    for (size_t i = 0; i < v->n; i++) {
        if (v->p[i] < '0' || v->p[i] > '9')
            return -1;
        t = t * 10 + (v->p[i] - '0');
    }
    if (t > max)
        return -1;
    *out = t;
    return 0;
}

/* The timestamp in milliseconds, or JN_WEBHOOK_ETIMESTAMP_MALFORMED. */
static int timestamp_value(vctx_t *c, const val_t *ts, int64_t *ms)
{
    const jn_webhook_scheme_t *s = c->s;
    int64_t t, max = s->timestamp_ms ? NOW_MS_MAX : NOW_MS_MAX / 1000;
    char where[96];
    if (parse_timestamp(ts, max, &t) < 0)
        return reject(c, JN_WEBHOOK_ETIMESTAMP_MALFORMED,
                      "%s is not a Unix time in %s (1 to 16 decimal digits)",
                      source_desc(&s->timestamp, where, sizeof(where)),
                      s->timestamp_ms ? "milliseconds" : "seconds");
    if (ms != NULL)
        *ms = s->timestamp_ms ? t : t * 1000;
    return 0;
}

static int check_window(vctx_t *c, const val_t *ts)
{
    const jn_webhook_scheme_t *s = c->s;
    int64_t t;
    int rc;
    if ((rc = timestamp_value(c, ts, &t)) < 0)
        return rc;
    int64_t skew = c->req->now_ms - t;
    int64_t abs_skew = skew < 0 ? -skew : skew;
    if (abs_skew > s->tolerance_s * 1000)
        return reject(c, JN_WEBHOOK_ETIMESTAMP_STALE,
                      "timestamp is %" PRId64 ".%03" PRId64 " s in the %s, outside the %" PRId64
                      " s tolerance",
                      abs_skew / 1000, abs_skew % 1000, skew > 0 ? "past" : "future",
                      s->tolerance_s);
    return 0;
}

/* One entry of the signature header: 1 a candidate, 0 another version or
 * method (skipped in a list), -1 malformed (why set). */
static int signature_entry(const jn_webhook_scheme_t *s, const char *p, size_t n, candidate_t *cand,
                           char *why, size_t whylen)
{
    unsigned alg = s->algorithms;
    if (s->method_prefix) {
        const char *eq = memchr(p, '=', n);
        if (eq == NULL) {
            snprintf(why, whylen, "has no '<method>=' prefix");
            return -1;
        }
        alg = wh_alg_parse(p, (size_t)(eq - p));
        if (alg == 0 || !(alg & s->algorithms)) {
            char list[32] = "";
            for (unsigned a = WH_ALG_SHA1; a <= WH_ALG_SHA512; a <<= 1)
                if (s->algorithms & a)
                    snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                             list[0] ? ", " : "", wh_alg_name(a));
            snprintf(why, whylen, "names a method that is not one of: %s", list);
            return 0;
        }
        n -= (size_t)(eq + 1 - p);
        p = eq + 1;
    } else if (s->sig_prefix != NULL) {
        size_t plen = strlen(s->sig_prefix);
        if (n < plen || memcmp(p, s->sig_prefix, plen) != 0) {
            snprintf(why, whylen, "does not start with %s", s->sig_prefix);
            return 0;
        }
        p += plen;
        n -= plen;
    }
    size_t dlen = wh_alg_len(alg);
    cand->alg = alg;
    if (s->encoding == WH_ENC_HEX) {
        if (n != 2 * dlen) {
            snprintf(why, whylen, "has %zu hex digits where %s needs %zu", n, wh_alg_name(alg),
                     2 * dlen);
            return -1;
        }
        if (jn_hex_decode(p, n, cand->mac) != (long)dlen) {
            snprintf(why, whylen, "is not hexadecimal");
            return -1;
        }
        return 1;
    }
    uint8_t *raw = NULL;
    size_t rlen = 0;
    if (n > 4 * dlen || jn_base64_decode(p, n, &raw, &rlen) < 0) {
        snprintf(why, whylen, "is not base64 of a %s digest", wh_alg_name(alg));
        return -1;
    }
    int ok = rlen == dlen;
    if (ok)
        memcpy(cand->mac, raw, dlen);
    else
        snprintf(why, whylen, "decodes to %zu bytes where %s needs %zu", rlen, wh_alg_name(alg),
                 dlen);
    free(raw);
    return ok ? 1 : -1;
}

static int signature_candidates(vctx_t *c, const val_t *sig, candidate_t *cand, size_t *ncand)
{
    const jn_webhook_scheme_t *s = c->s;
    const char *p = sig->p, *end = sig->p + sig->n;
    size_t sep = s->separator != NULL ? strlen(s->separator) : 0, entries = 0;
    char why[128] = "";
    int malformed = 0;

    *ncand = 0;
    while (p < end) {
        const char *e = end, *next = end;
        if (sep > 0 && (e = memmem(p, (size_t)(end - p), s->separator, sep)) != NULL)
            next = e + sep;
        else
            e = end;
        const char *q = p;
        size_t n = (size_t)(e - p);
        p = next;
        trim(&q, &n);
        if (n == 0)
            continue;
        if (++entries > JN_WEBHOOK_MAX_SIGNATURES)
            return reject(c, JN_WEBHOOK_ESIGNATURE_MALFORMED,
                          "header %s holds more than %d signatures", s->sig_header,
                          JN_WEBHOOK_MAX_SIGNATURES);
        int rc = signature_entry(s, q, n, &cand[*ncand], why, sizeof(why));
        if (rc > 0)
            (*ncand)++;
        malformed |= rc < 0;
        /* One signature per header: what is not ours is malformed. */
        if (rc <= 0 && sep == 0)
            return reject(c, JN_WEBHOOK_ESIGNATURE_MALFORMED, "header %s %s", s->sig_header, why);
    }
    if (*ncand > 0)
        return 0;
    if (entries == 0)
        return reject(c, JN_WEBHOOK_ESIGNATURE_MISSING, "header %s is empty", s->sig_header);
    if (malformed)
        return reject(c, JN_WEBHOOK_ESIGNATURE_MALFORMED,
                      "header %s: no usable signature among %zu (one %s)", s->sig_header, entries,
                      why);
    return reject(c, JN_WEBHOOK_ESIGNATURE_MALFORMED,
                  "header %s: none of its %zu signatures is of a known version (each %s)",
                  s->sig_header, entries, why);
}

/* One HMAC context per digest, with its digest set and no key, made once per
 * process and only ever copied afterwards. Fetching the HMAC implementation
 * and then its digest by name (what EVP_MAC_fetch and a digest parameter to
 * EVP_MAC_init do) takes OpenSSL's provider lock and a name lookup each
 * time: most of the cost of verifying a small delivery. A copy of a template
 * shares the fetched digest; the key goes into the copy, never the template,
 * so the templates hold nothing secret and are safe to share across threads. */
static const unsigned hmac_algs[] = {WH_ALG_SHA1, WH_ALG_SHA256, WH_ALG_SHA512};
#define NHMAC_ALGS (sizeof(hmac_algs) / sizeof(hmac_algs[0]))
static EVP_MAC_CTX *hmac_templates[NHMAC_ALGS];
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

static void hmac_templates_init(void)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);

    for (size_t i = 0; mac != NULL && i < NHMAC_ALGS; i++) {
        OSSL_PARAM params[2] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                             (char *)wh_alg_digest(hmac_algs[i]), 0),
            OSSL_PARAM_construct_end(),
        };
        EVP_MAC_CTX *t = EVP_MAC_CTX_new(mac);
        if (t != NULL && EVP_MAC_CTX_set_params(t, params) != 1) {
            EVP_MAC_CTX_free(t);
            t = NULL;
        }
        hmac_templates[i] = t;
    }
    /* the contexts hold their own references */
    EVP_MAC_free(mac);
    ERR_clear_error();
}

/* A fresh context for one HMAC with alg (a WH_ALG_* value), or NULL. */
static EVP_MAC_CTX *hmac_ctx_new(unsigned alg)
{
    if (pthread_once(&hmac_once, hmac_templates_init) != 0)
        return NULL;
    for (size_t i = 0; i < NHMAC_ALGS; i++)
        if (hmac_algs[i] == alg)
            return hmac_templates[i] != NULL ? EVP_MAC_CTX_dup(hmac_templates[i]) : NULL;
    return NULL;
}

/* HMAC of the signed content with one key, streamed: the body is not copied. */
static int hmac_segments(unsigned alg, const wh_key_t *key, const wh_seg_t *segs, size_t nsegs,
                         uint8_t out[64])
{
    EVP_MAC_CTX *mctx = hmac_ctx_new(alg);
    size_t outl = 0;
    int rc = -1;

    if (mctx == NULL || EVP_MAC_init(mctx, key->p, key->n, NULL) != 1)
        goto out;
    for (size_t i = 0; i < nsegs; i++)
        if (segs[i].n > 0 && EVP_MAC_update(mctx, segs[i].p, segs[i].n) != 1)
            goto out;
    if (EVP_MAC_final(mctx, out, &outl, 64) != 1 || outl != wh_alg_len(alg))
        goto out;
    rc = 0;
out:
    /* frees the key schedule with the context (OpenSSL cleanses it) */
    EVP_MAC_CTX_free(mctx);
    return rc;
}

static int verify_hmac(vctx_t *c)
{
    const jn_webhook_scheme_t *s = c->s;
    val_t sig = {0}, ts = {0}, id = {0}, hv[WH_TEMPLATE_MAX_PARTS];
    candidate_t cand[JN_WEBHOOK_MAX_SIGNATURES];
    wh_key_t keys[JN_WEBHOOK_MAX_SECRETS];
    wh_seg_t segs[WH_TEMPLATE_MAX_PARTS];
    size_t ncand = 0, nkeys = 0, ndecoded = 0;
    jn_webhook_keycache_t *kc;
    unsigned need = 0;
    char where[96], err[160];
    int rc;

    memset(hv, 0, sizeof(hv));
    if ((rc = header_find(c, s->sig_header, &sig)) < 0)
        goto out;
    if (rc == 0 || sig.n == 0) {
        rc = reject(c, JN_WEBHOOK_ESIGNATURE_MISSING, "header %s is %s", s->sig_header,
                    rc == 0 ? "absent" : "empty");
        goto out;
    }
    if ((rc = signature_candidates(c, &sig, cand, &ncand)) < 0)
        goto out;

    /* The inputs of the signed content. */
    for (size_t i = 0; i < s->nparts; i++) {
        const wh_part_t *part = &s->parts[i];
        val_t *v = NULL;
        switch (part->kind) {
        case WH_PART_LITERAL:
            segs[i] = (wh_seg_t){part->text, part->len};
            continue;
        case WH_PART_BODY:
            segs[i] = (wh_seg_t){c->req->body, c->req->body_len};
            continue;
        case WH_PART_METHOD:
            segs[i] = (wh_seg_t){c->req->method, strlen(c->req->method)};
            continue;
        case WH_PART_PATH:
            segs[i] = (wh_seg_t){c->req->path, c->req->path != NULL ? strlen(c->req->path) : 0};
            continue;
        case WH_PART_TIMESTAMP:
            v = &ts;
            if (v->p == NULL && (rc = source_get(c, &s->timestamp, v)) <= 0) {
                if (rc == 0)
                    rc = reject(c, JN_WEBHOOK_ETIMESTAMP_MISSING, "%s is absent",
                                source_desc(&s->timestamp, where, sizeof(where)));
                goto out;
            }
            /* Its form now (a precise error rather than a mismatch), the
             * window once the signature holds. */
            if ((rc = timestamp_value(c, v, NULL)) < 0)
                goto out;
            break;
        case WH_PART_ID:
            v = &id;
            if (v->p == NULL && (rc = source_get(c, &s->delivery_id, v)) <= 0) {
                if (rc == 0)
                    rc = reject(c, JN_WEBHOOK_ESIGNED_INPUT, "%s is absent (it is signed)",
                                source_desc(&s->delivery_id, where, sizeof(where)));
                goto out;
            }
            break;
        default: /* WH_PART_HEADER */
            v = &hv[i];
            if ((rc = header_find(c, part->text, v)) <= 0) {
                if (rc == 0)
                    rc = reject(c, JN_WEBHOOK_ESIGNED_INPUT, "header %s is absent (it is signed)",
                                part->text);
                goto out;
            }
            break;
        }
        segs[i] = (wh_seg_t){v->p, v->n};
    }

    /* With a key cache, the secrets are decoded only when an algorithm the
     * signatures use is not prepared yet (then all of them, so that a bad
     * secret is reported whichever one would have matched). */
    kc = c->sec->keycache;
    for (size_t i = 0; i < ncand; i++)
        if (!wh_keycache_ready(kc, cand[i].alg, c->sec))
            need |= cand[i].alg;
    if (kc == NULL || need != 0) {
        if (secrets_decode(s, c->sec, keys, err, sizeof(err)) < 0) {
            rc = reject(c,
                        strcmp(err, "out of memory") == 0 ? JN_WEBHOOK_ENOMEM : JN_WEBHOOK_ECONFIG,
                        "%s", err);
            goto out;
        }
        ndecoded = c->sec->secret_count;
        for (unsigned alg = 1; kc != NULL && alg <= WH_ALG_SHA512; alg <<= 1)
            if ((need & alg) && wh_keycache_put(kc, alg, c->sec, keys) < 0)
                kc = NULL; /* out of locked memory: this request keys as before */
    }
    nkeys = c->sec->secret_count;
    int matched = -1;
    for (size_t k = 0; k < nkeys && matched < 0; k++) {
        unsigned done = 0;
        for (size_t i = 0; i < ncand && matched < 0; i++) {
            uint8_t mac_out[64];
            unsigned alg = cand[i].alg;
            if (done & alg)
                continue;
            done |= alg;
            if ((kc != NULL ? wh_keycache_mac(kc, alg, k, segs, s->nparts, mac_out)
                            : hmac_segments(alg, &keys[k], segs, s->nparts, mac_out)) < 0) {
                rc = reject(c, JN_WEBHOOK_ENOMEM, "HMAC-%s failed", wh_alg_name(alg));
                goto out;
            }
            for (size_t j = i; j < ncand; j++)
                if (cand[j].alg == alg && CRYPTO_memcmp(mac_out, cand[j].mac, wh_alg_len(alg)) == 0)
                    matched = (int)k;
            OPENSSL_cleanse(mac_out, sizeof(mac_out));
        }
    }
    if (matched < 0) {
        rc = reject(c, JN_WEBHOOK_ESIGNATURE_MISMATCH,
                    "no signature in header %s matches (%zu signature%s, %zu secret%s tried)",
                    s->sig_header, ncand, ncand == 1 ? "" : "s", nkeys, nkeys == 1 ? "" : "s");
        goto out;
    }
    c->out->secret_index = matched;

    if (s->timestamp.kind != WH_SRC_NONE) {
        if (ts.p == NULL && (rc = source_get(c, &s->timestamp, &ts)) <= 0) {
            if (rc < 0)
                goto out;
            if (s->timestamp.kind == WH_SRC_JSON && c->body == NULL)
                rc = reject(c, JN_WEBHOOK_EBODY, "body is not JSON, so it has no %s",
                            source_desc(&s->timestamp, where, sizeof(where)));
            else
                rc = reject(c, JN_WEBHOOK_ETIMESTAMP_MISSING, "%s is absent",
                            source_desc(&s->timestamp, where, sizeof(where)));
            goto out;
        }
        if ((rc = check_window(c, &ts)) < 0)
            goto out;
    }
    rc = 0;
out:
    ERR_clear_error();
    for (size_t k = 0; k < ndecoded; k++)
        key_free(&keys[k]);
    OPENSSL_cleanse(cand, sizeof(cand));
    val_free(&sig);
    val_free(&ts);
    val_free(&id);
    for (size_t i = 0; i < WH_TEMPLATE_MAX_PARTS; i++)
        val_free(&hv[i]);
    return rc;
}

/* ---- token ------------------------------------------------------------- */

/* Index of the secret whose digest the token's digest equals, or -1. Every
 * secret is compared; digests make the comparison independent of lengths. */
static int token_match(const uint8_t (*digests)[JN_SHA256_LEN], size_t count, const char *p,
                       size_t n)
{
    uint8_t d[JN_SHA256_LEN];
    int found = -1;
    if (jn_sha256(p, n, d) < 0)
        return -1;
    for (size_t i = 0; i < count; i++)
        if (CRYPTO_memcmp(d, digests[i], JN_SHA256_LEN) == 0 && found < 0)
            found = (int)i;
    OPENSSL_cleanse(d, sizeof(d));
    return found;
}

static int token_each(vctx_t *c, const uint8_t (*digests)[JN_SHA256_LEN], size_t count)
{
    const wh_source_t *src = &c->s->token;
    const jn_json_t *root = body_json(c), *list;
    size_t star = (size_t)src->star, i = 0;
    char path[96];

    if (root == NULL)
        return reject(
            c, c->body_status == JN_JSON_ENOMEM ? JN_WEBHOOK_ENOMEM : JN_WEBHOOK_ETOKEN_MISSING,
            "body is not JSON, so it has no %s", source_desc(src, path, sizeof(path)));
    list = json_walk(root, src->segs, star);
    if (!jn_json_is_array(list) || jn_json_count(list) == 0)
        return reject(c, JN_WEBHOOK_ETOKEN_MISSING, "%s: the list is absent or empty",
                      source_desc(src, path, sizeof(path)));
    for (const jn_json_t *e = jn_json_first(list); e != NULL; e = jn_json_next(e), i++) {
        size_t n = 0;
        const jn_json_t *node = json_walk(e, src->segs + star + 1, src->nsegs - star - 1);
        const char *tok = jn_json_string(node, &n);
        if (tok == NULL || n == 0)
            return reject(c, JN_WEBHOOK_ETOKEN_MISSING, "%s: element %zu has none",
                          source_desc(src, path, sizeof(path)), i);
        int k = token_match(digests, count, tok, n);
        if (k < 0)
            return reject(c, JN_WEBHOOK_ETOKEN_MISMATCH,
                          "%s: element %zu matches none of the %zu secrets",
                          source_desc(src, path, sizeof(path)), i, count);
        if (i == 0)
            c->out->secret_index = k;
    }
    return 0;
}

static int verify_token(vctx_t *c)
{
    const jn_webhook_scheme_t *s = c->s;
    uint8_t digests[JN_WEBHOOK_MAX_SECRETS][JN_SHA256_LEN];
    wh_key_t keys[JN_WEBHOOK_MAX_SECRETS];
    val_t v = {0};
    char where[96], err[160];
    int rc;

    if (secrets_decode(s, c->sec, keys, err, sizeof(err)) < 0)
        return reject(c, JN_WEBHOOK_ECONFIG, "%s", err);
    size_t count = c->sec->secret_count;
    for (size_t i = 0; i < count; i++) {
        if (jn_sha256(keys[i].p, keys[i].n, digests[i]) < 0) {
            count = i;
            rc = reject(c, JN_WEBHOOK_ENOMEM, "SHA-256 failed");
            goto out;
        }
    }
    if (s->token.star >= 0) {
        rc = token_each(c, (const uint8_t(*)[JN_SHA256_LEN])digests, count);
        goto out;
    }
    if ((rc = source_get(c, &s->token, &v)) < 0)
        goto out;
    if (rc > 0 && s->token_prefix != NULL) {
        size_t plen = strlen(s->token_prefix);
        if (v.n < plen || strncasecmp(v.p, s->token_prefix, plen) != 0) {
            rc = reject(c, JN_WEBHOOK_ETOKEN_MISSING, "%s does not start with %s",
                        source_desc(&s->token, where, sizeof(where)), s->token_prefix);
            goto out;
        }
        v.p += plen;
        v.n -= plen;
        trim(&v.p, &v.n);
    }
    if (rc == 0 || v.n == 0) {
        rc = reject(c, JN_WEBHOOK_ETOKEN_MISSING, "%s is %s",
                    source_desc(&s->token, where, sizeof(where)), rc == 0 ? "absent" : "empty");
        goto out;
    }
    int k = token_match((const uint8_t(*)[JN_SHA256_LEN])digests, count, v.p, v.n);
    if (k < 0) {
        rc = reject(c, JN_WEBHOOK_ETOKEN_MISMATCH, "%s matches none of the %zu secrets",
                    source_desc(&s->token, where, sizeof(where)), count);
        goto out;
    }
    c->out->secret_index = k;
    rc = 0;
out:
    OPENSSL_cleanse(digests, sizeof(digests));
    for (size_t i = 0; i < c->sec->secret_count && i < JN_WEBHOOK_MAX_SECRETS; i++)
        key_free(&keys[i]);
    val_free(&v);
    return rc;
}

/* ---- jwt --------------------------------------------------------------- */

static int jwt_reason(int status)
{
    switch (status) {
    case JN_JWT_ENOMEM:
        return JN_WEBHOOK_ENOMEM;
    case JN_JWT_EMALFORMED:
    case JN_JWT_ECLAIMS:
        return JN_WEBHOOK_EJWT_MALFORMED;
    case JN_JWT_EUNSIGNED:
    case JN_JWT_EALG:
        return JN_WEBHOOK_EJWT_ALGORITHM;
    case JN_JWT_EKEY:
        return JN_WEBHOOK_EJWT_KEY;
    case JN_JWT_ESIGNATURE:
        return JN_WEBHOOK_EJWT_SIGNATURE;
    case JN_JWT_EEXPIRED:
        return JN_WEBHOOK_EJWT_EXPIRED;
    case JN_JWT_ENOTYET:
        return JN_WEBHOOK_EJWT_NOT_YET_VALID;
    case JN_JWT_EAUDIENCE:
        return JN_WEBHOOK_EJWT_AUDIENCE;
    case JN_JWT_EISSUER:
        return JN_WEBHOOK_EJWT_ISSUER;
    default:
        return JN_WEBHOOK_ECONFIG;
    }
}

/* The configured keys and the JWK Set's, side by side (views, not copies). */
static int jwt_keys(const jn_webhook_secrets_t *sec, jn_jwt_jwks_t **jwks, jn_jwt_pubkey_t *keys,
                    size_t *count, char *err, size_t errlen)
{
    size_t n = 0, jn = 0;
    const jn_jwt_pubkey_t *jkeys = NULL;
    *jwks = NULL;
    if (sec->key_count > 0 && sec->keys == NULL) {
        snprintf(err, errlen, "key_count without keys");
        return -1;
    }
    if (sec->jwks_json != NULL) {
        if (jn_jwt_jwks_parse(sec->jwks_json, strlen(sec->jwks_json), jwks, err, errlen) < 0)
            return -1;
        jkeys = jn_jwt_jwks_keys(*jwks, &jn);
    }
    if (sec->key_count + jn == 0) {
        snprintf(err, errlen, "the integration has no JWT verification key (keys or a JWK Set)");
        return -1;
    }
    if (sec->key_count + jn > JWT_MAX_KEYS) {
        snprintf(err, errlen, "%zu JWT verification keys; at most %d are accepted",
                 sec->key_count + jn, JWT_MAX_KEYS);
        return -1;
    }
    for (size_t i = 0; i < sec->key_count; i++)
        keys[n++] = sec->keys[i];
    for (size_t i = 0; i < jn; i++)
        keys[n++] = jkeys[i];
    *count = n;
    return 0;
}

static int check_email(vctx_t *c, const char *claims_json)
{
    jn_json_t *claims = NULL;
    const char *email;
    size_t n;
    int rc = 0;

    if (jn_json_parse(claims_json, strlen(claims_json), NULL, &claims, NULL) != JN_JSON_OK)
        return reject(c, JN_WEBHOOK_EJWT_MALFORMED, "token claims do not parse");
    email = jn_json_string(jn_json_get(claims, "email"), &n);
    if (email == NULL)
        rc = reject(c, JN_WEBHOOK_EJWT_EMAIL, "token has no email claim (one is configured)");
    else if (strlen(c->sec->email) != n || memcmp(email, c->sec->email, n) != 0)
        rc = reject(c, JN_WEBHOOK_EJWT_EMAIL, "token email is not the configured one");
    else if (!jn_json_is_true(jn_json_get(claims, "email_verified")))
        rc = reject(c, JN_WEBHOOK_EJWT_EMAIL, "token email_verified is not true");
    jn_json_free(claims);
    return rc;
}

static int verify_jwt(vctx_t *c)
{
    const jn_webhook_scheme_t *s = c->s;
    const jn_webhook_secrets_t *sec = c->sec;
    jn_jwt_pubkey_t keys[JWT_MAX_KEYS];
    jn_jwt_jwks_t *jwks = NULL;
    size_t nkeys = 0;
    char *token = NULL, *claims = NULL, msg[256];
    val_t v = {0};
    int rc;

    if ((rc = header_find(c, s->jwt_header, &v)) < 0)
        goto out;
    if (rc == 0 || v.n == 0) {
        rc = reject(c, JN_WEBHOOK_ETOKEN_MISSING, "header %s is %s: a %stoken is required",
                    s->jwt_header, rc == 0 ? "absent" : "empty",
                    s->jwt_prefix != NULL ? s->jwt_prefix : "");
        goto out;
    }
    if (s->jwt_prefix != NULL) {
        size_t plen = strlen(s->jwt_prefix);
        if (v.n < plen || strncasecmp(v.p, s->jwt_prefix, plen) != 0) {
            rc = reject(c, JN_WEBHOOK_EJWT_MALFORMED, "header %s does not start with %s",
                        s->jwt_header, s->jwt_prefix);
            goto out;
        }
        v.p += plen;
        v.n -= plen;
        trim(&v.p, &v.n);
    }
    if (v.n == 0 || v.n > JWT_MAX_LEN) {
        rc = reject(c, v.n == 0 ? JN_WEBHOOK_ETOKEN_MISSING : JN_WEBHOOK_EJWT_MALFORMED,
                    "header %s holds %s", s->jwt_header,
                    v.n == 0 ? "no token" : "a token longer than 16384 bytes");
        goto out;
    }
    if (sec->audience == NULL || sec->audience[0] == '\0') {
        rc = reject(c, JN_WEBHOOK_ECONFIG, "the integration has no JWT audience configured");
        goto out;
    }
    if (jwt_keys(sec, &jwks, keys, &nkeys, msg, sizeof(msg)) < 0) {
        rc = reject(c, JN_WEBHOOK_ECONFIG, "%s", msg);
        goto out;
    }
    if ((token = memdup_str(v.p, v.n)) == NULL) {
        rc = reject(c, JN_WEBHOOK_ENOMEM, "out of memory");
        goto out;
    }
    int st = jn_jwt_verify_rs256(token, keys, nkeys, sec->audience, (const char *const *)s->issuers,
                                 s->nissuers, c->req->now_ms / 1000, s->leeway_s,
                                 sec->email != NULL ? &claims : NULL, msg, sizeof(msg));
    if (st == JN_JWT_EKEY) {
        /* An unusable configured key is ours to fix, not the sender's. */
        for (size_t i = 0; i < nkeys; i++) {
            char kerr[160];
            if (jn_jwt_pubkey_check(&keys[i], kerr, sizeof(kerr)) != JN_JWT_OK) {
                rc = reject(c, JN_WEBHOOK_ECONFIG, "JWT verification key %zu: %s", i, kerr);
                goto out;
            }
        }
    }
    if (st != JN_JWT_OK) {
        rc = reject(c, jwt_reason(st), "%s", msg);
        goto out;
    }
    rc = sec->email != NULL ? check_email(c, claims) : 0;
out:
    if (token != NULL) {
        OPENSSL_cleanse(token, v.n);
        free(token);
    }
    free(claims);
    jn_jwt_jwks_free(jwks);
    val_free(&v);
    return rc;
}

/* ---- Handshakes -------------------------------------------------------- */

/* 1 when the request is the declared handshake, 0 when not, or a reason. */
static int challenge_detect(vctx_t *c)
{
    const jn_webhook_scheme_t *s = c->s;
    val_t v;
    int rc, hit;
    if (!s->has_challenge ||
        (s->challenge_method != NULL && strcmp(c->req->method, s->challenge_method) != 0))
        return 0;
    if ((rc = source_get(c, &s->challenge_detect, &v)) <= 0)
        return rc;
    hit = s->challenge_equals == NULL ||
          (v.n == strlen(s->challenge_equals) && memcmp(v.p, s->challenge_equals, v.n) == 0);
    val_free(&v);
    return hit;
}

/* The value is echoed to the sender: bounded, well-formed UTF-8, no control
 * characters (no header or log injection through it). */
static int challenge_value_ok(const val_t *v)
{
    for (size_t i = 0; i < v->n;) {
        unsigned char ch = (unsigned char)v->p[i];
        size_t len = jn_json_utf8_len(v->p + i, v->n - i);
        if (len == 0 || ch < 0x20 || ch == 0x7f)
            return 0;
        i += len;
    }
    return 1;
}

static int challenge_answer(vctx_t *c)
{
    const jn_webhook_scheme_t *s = c->s;
    const wh_source_t *src =
        s->challenge_value.kind != WH_SRC_NONE ? &s->challenge_value : &s->challenge_detect;
    jn_webhook_result_t *out = c->out;
    val_t v;
    char where[96];
    int rc;

    if ((rc = source_get(c, src, &v)) < 0)
        return rc;
    if (rc == 0 || v.n == 0) {
        rc = reject(c, JN_WEBHOOK_ECHALLENGE, "handshake without a value: %s is absent or empty",
                    source_desc(src, where, sizeof(where)));
    } else if (v.n > JN_WEBHOOK_MAX_CHALLENGE_LEN) {
        rc = reject(c, JN_WEBHOOK_ECHALLENGE, "handshake value is %zu bytes; at most %d", v.n,
                    JN_WEBHOOK_MAX_CHALLENGE_LEN);
    } else if (!challenge_value_ok(&v)) {
        rc = reject(c, JN_WEBHOOK_ECHALLENGE,
                    "handshake value is not UTF-8 text without control characters");
    } else if (s->challenge_json_name == NULL) {
        if ((out->response_body = malloc(v.n + 1)) == NULL) {
            rc = reject(c, JN_WEBHOOK_ENOMEM, "out of memory");
        } else {
            memcpy(out->response_body, v.p, v.n);
            out->response_body[v.n] = '\0';
            out->response_len = v.n;
            out->content_type = "text/plain; charset=utf-8";
        }
    } else {
        /* {"<name>":"<value>"}; < > & are escaped too, so that no sniffing
         * client takes the answer for markup. */
        size_t cap = strlen(s->challenge_json_name) + 6 * v.n + 8, o = 0;
        char *b = malloc(cap);
        if (b == NULL) {
            rc = reject(c, JN_WEBHOOK_ENOMEM, "out of memory");
        } else {
            o += (size_t)snprintf(b, cap, "{\"%s\":\"", s->challenge_json_name);
            for (size_t i = 0; i < v.n; i++) {
                unsigned char ch = (unsigned char)v.p[i];
                if (ch == '"' || ch == '\\')
                    b[o++] = '\\', b[o++] = (char)ch;
                else if (ch == '<' || ch == '>' || ch == '&')
                    o += (size_t)snprintf(b + o, cap - o, "\\u%04x", ch);
                else
                    b[o++] = (char)ch;
            }
            memcpy(b + o, "\"}", 3);
            out->response_body = b;
            out->response_len = o + 2;
            out->content_type = "application/json";
        }
    }
    val_free(&v);
    if (rc < 0)
        return rc;
    out->verdict = JN_WEBHOOK_CHALLENGE;
    out->status = 200;
    return 0;
}

/* ---- Delivery id and event type ---------------------------------------- */

static int take_id(vctx_t *c, const wh_source_t *src, char dst[JN_WEBHOOK_MAX_ID_LEN + 1],
                   int reason, const char *what)
{
    val_t v;
    char where[96];
    int rc;
    dst[0] = '\0';
    if (src->kind == WH_SRC_NONE || (rc = source_get(c, src, &v)) == 0)
        return 0;
    if (rc < 0)
        return rc;
    if (v.n > JN_WEBHOOK_MAX_ID_LEN)
        rc = reject(c, reason, "%s (%s) is %zu bytes; at most %d", what,
                    source_desc(src, where, sizeof(where)), v.n, JN_WEBHOOK_MAX_ID_LEN);
    for (size_t i = 0; rc > 0 && i < v.n; i++)
        if ((unsigned char)v.p[i] < 0x20 || (unsigned char)v.p[i] > 0x7e)
            rc = reject(c, reason, "%s (%s) holds a byte outside printable ASCII", what,
                        source_desc(src, where, sizeof(where)));
    if (rc > 0) {
        memcpy(dst, v.p, v.n);
        dst[v.n] = '\0';
        rc = 0;
    }
    val_free(&v);
    return rc;
}

/* ---- Entry points ------------------------------------------------------ */

static int request_ok(const jn_webhook_request_t *req)
{
    if (req->method == NULL || req->method[0] == '\0' ||
        (req->headers == NULL && req->header_count > 0) ||
        (req->body == NULL && req->body_len > 0) || req->now_ms < 0 || req->now_ms > NOW_MS_MAX)
        return 0;
    return 1;
}

int jn_webhook_verify(const jn_webhook_scheme_t *scheme, const jn_webhook_request_t *req,
                      const jn_webhook_secrets_t *secrets, jn_webhook_result_t *out)
{
    vctx_t c = {scheme, req, secrets, out, NULL, 0, 0};
    int rc, hit;

    if (out == NULL)
        return JN_WEBHOOK_EINVAL;
    memset(out, 0, sizeof(*out));
    out->verdict = JN_WEBHOOK_REJECTED;
    out->secret_index = -1;
    if (scheme == NULL || req == NULL || secrets == NULL || !request_ok(req))
        return reject(&c, JN_WEBHOOK_EINVAL,
                      "jn_webhook_verify: scheme, request (method, headers, body, now_ms in "
                      "range) and secrets are required");

    if ((hit = challenge_detect(&c)) < 0) {
        rc = hit;
        goto out;
    }
    if (hit && !scheme->challenge_authenticate) {
        rc = challenge_answer(&c);
        goto out;
    }
    if (!hit && strcmp(req->method, "POST") != 0) {
        rc = reject(&c, JN_WEBHOOK_EMETHOD, "a delivery must be a POST");
        goto out;
    }
    switch (scheme->kind) {
    case WH_KIND_HMAC:
        rc = verify_hmac(&c);
        break;
    case WH_KIND_TOKEN:
        rc = verify_token(&c);
        break;
    default:
        rc = verify_jwt(&c);
        break;
    }
    if (rc < 0)
        goto out;
    if (hit) {
        rc = challenge_answer(&c);
        goto out;
    }
    if ((rc = take_id(&c, &scheme->delivery_id, out->delivery_id, JN_WEBHOOK_EDELIVERY_ID,
                      "delivery id")) < 0 ||
        (rc = take_id(&c, &scheme->event_type, out->event_type, JN_WEBHOOK_EEVENT_TYPE,
                      "event type")) < 0)
        goto out;
    out->verdict = JN_WEBHOOK_ACCEPTED;
    out->status = 200;
    rc = 0;
out:
    if (rc < 0) {
        out->delivery_id[0] = out->event_type[0] = '\0';
        out->secret_index = -1;
    }
    jn_json_free(c.body);
    return rc;
}

void jn_webhook_result_clear(jn_webhook_result_t *r)
{
    if (r == NULL)
        return;
    free(r->response_body);
    r->response_body = NULL;
    r->response_len = 0;
    r->content_type = NULL;
}

int jn_webhook_secrets_check(const jn_webhook_scheme_t *s, const jn_webhook_secrets_t *sec,
                             char *err, size_t errlen)
{
    char msg[256];
    if (s == NULL || sec == NULL)
        return jn_errorf(err, errlen, "jn_webhook_secrets_check: no scheme or no secrets");
    if (s->kind == WH_KIND_JWT) {
        jn_jwt_pubkey_t keys[JWT_MAX_KEYS];
        jn_jwt_jwks_t *jwks = NULL;
        size_t n = 0;
        if (sec->audience == NULL || sec->audience[0] == '\0')
            return jn_errorf(err, errlen, "the JWT audience is required (e.g. the push endpoint)");
        if (jwt_keys(sec, &jwks, keys, &n, msg, sizeof(msg)) < 0)
            return jn_errorf(err, errlen, "%s", msg);
        for (size_t i = 0; i < n; i++) {
            if (jn_jwt_pubkey_check(&keys[i], msg, sizeof(msg)) != JN_JWT_OK) {
                jn_jwt_jwks_free(jwks);
                return jn_errorf(err, errlen, "JWT verification key %zu: %s", i, msg);
            }
        }
        jn_jwt_jwks_free(jwks);
        return 0;
    }
    wh_key_t keys[JN_WEBHOOK_MAX_SECRETS];
    if (secrets_decode(s, sec, keys, msg, sizeof(msg)) < 0)
        return jn_errorf(err, errlen, "%s", msg);
    for (size_t i = 0; i < sec->secret_count; i++)
        key_free(&keys[i]);
    return 0;
}
