/* What a parsed webhook declaration looks like inside the core, shared by the
 * declaration parser (webhook.c) and the verifier (webhook_verify.c). */
#ifndef JUNCTION_WEBHOOK_INTERNAL_H
#define JUNCTION_WEBHOOK_INTERNAL_H

#include "junction/webhook.h"

#include <stddef.h>
#include <stdint.h>

#define WH_PATH_MAX_SEGMENTS 8
#define WH_TEMPLATE_MAX_PARTS 16
#define WH_MAX_ISSUERS 8

enum { WH_KIND_HMAC, WH_KIND_TOKEN, WH_KIND_JWT };

/* Where a value comes from. */
enum { WH_SRC_NONE, WH_SRC_HEADER, WH_SRC_QUERY, WH_SRC_JSON };

typedef struct {
    int kind;
    char *name; /* header name, query parameter name or the JSON path as written */
    /* JSON: the path split on '.'; "*" (token only) stands for every element */
    char *segs[WH_PATH_MAX_SEGMENTS];
    size_t nsegs;
    int star; /* index of the "*" segment, or -1 */
} wh_source_t;

/* HMAC algorithms, as a bit set for method prefixes. */
enum { WH_ALG_SHA1 = 1, WH_ALG_SHA256 = 2, WH_ALG_SHA512 = 4 };

enum { WH_ENC_HEX, WH_ENC_BASE64 };
enum { WH_SECRET_RAW, WH_SECRET_HEX, WH_SECRET_BASE64, WH_SECRET_WHSEC };

/* Signed-content template parts. */
enum {
    WH_PART_LITERAL,
    WH_PART_BODY,
    WH_PART_TIMESTAMP,
    WH_PART_ID,
    WH_PART_METHOD,
    WH_PART_PATH,
    WH_PART_HEADER
};

typedef struct {
    int kind;
    char *text; /* literal text, or the header name */
    size_t len;
} wh_part_t;

struct jn_webhook_scheme {
    int kind;
    const char *preset; /* static name, or NULL */

    /* hmac */
    unsigned algorithms; /* WH_ALG_* set; exactly one unless method_prefix */
    char *sig_header;
    char *sig_prefix; /* NULL: none */
    int method_prefix;
    int encoding;
    char *separator; /* NULL: one signature per header */
    wh_part_t parts[WH_TEMPLATE_MAX_PARTS];
    size_t nparts;
    int secret_encoding;
    wh_source_t timestamp; /* WH_SRC_NONE: no replay window */
    int timestamp_ms;
    int64_t tolerance_s;

    /* token */
    wh_source_t token;
    char *token_prefix;

    /* jwt */
    char *jwt_header;
    char *jwt_prefix;
    char *issuers[WH_MAX_ISSUERS];
    size_t nissuers;
    int64_t leeway_s;

    wh_source_t delivery_id;
    wh_source_t event_type;

    /* handshake */
    int has_challenge;
    char *challenge_method; /* NULL: any */
    wh_source_t challenge_detect;
    char *challenge_equals; /* NULL: the source being present is enough */
    wh_source_t challenge_value;
    char *challenge_json_name; /* NULL: answer the value as text/plain */
    int challenge_authenticate;
};

/* Digest length of one WH_ALG_* value, and its names. */
size_t wh_alg_len(unsigned alg);
const char *wh_alg_name(unsigned alg);          /* "sha256" */
const char *wh_alg_digest(unsigned alg);        /* "SHA256", for OpenSSL */
unsigned wh_alg_parse(const char *s, size_t n); /* 0 when unknown; case-insensitive */

/* A decoded HMAC key or a token's digest. */
typedef struct {
    const uint8_t *p;
    size_t n;
    uint8_t *owned;
    size_t owned_len;
} wh_key_t;

/* One piece of the signed content. */
typedef struct {
    const void *p;
    size_t n;
} wh_seg_t;

/* Prepared keys (webhook_hmac.c). ready: whether the cache holds alg's keys
 * for exactly these secrets (the same count, and each the same data and
 * length as when they were prepared). put: prepares alg's keys from the
 * decoded keys[] (one per secret), replacing what was there; -1 when out of
 * memory. mac: the HMAC of the segments with secret index's prepared key
 * into out (the algorithm's length); -1 when that key is not prepared. */
int wh_keycache_ready(const jn_webhook_keycache_t *c, unsigned alg,
                      const jn_webhook_secrets_t *sec);
int wh_keycache_put(jn_webhook_keycache_t *c, unsigned alg, const jn_webhook_secrets_t *sec,
                    const wh_key_t *keys);
int wh_keycache_mac(const jn_webhook_keycache_t *c, unsigned alg, size_t index,
                    const wh_seg_t *segs, size_t nsegs, uint8_t out[64]);

#endif
