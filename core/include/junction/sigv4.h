/* AWS Signature Version 4, header variant (Authorization: AWS4-HMAC-SHA256).
 *
 * Pure functions: no I/O, no clock, no global state. The caller describes the
 * request exactly as it will be sent and receives the headers to add to it.
 *
 * Canonicalization follows the AWS specification and its published test suite:
 *  - path: taken as it appears on the request line (already percent-encoded by
 *    the sender, raw spaces and UTF-8 accepted). With JN_SIGV4_NORMALIZE_PATH
 *    dot segments are removed and repeated slashes collapsed. With
 *    JN_SIGV4_DOUBLE_ENCODE every segment is encoded once more ("%20" becomes
 *    "%2520"); without it each segment is decoded then encoded once (S3).
 *  - query: split on '&', each name and value percent-decoded then encoded per
 *    RFC 3986 (unreserved characters only), sorted by name then value; a '+'
 *    is a literal plus (encode spaces as %20).
 *  - headers: names lower-cased, values trimmed with runs of spaces and tabs
 *    collapsed to one space (quotes are not special), duplicates joined with
 *    ',' in the order given, sorted by name. User-Agent, Expect, Connection
 *    and X-Amzn-Trace-Id are not signed: clients and proxies rewrite them.
 *    A Host header is required.
 *
 * Every function returns 0, or -1 with a message in `err` (may be NULL). The
 * messages never contain the secret, the session token or header values.
 */
#ifndef JUNCTION_SIGV4_H
#define JUNCTION_SIGV4_H

#include <stddef.h>
#include <stdint.h>

#define JN_SIGV4_KEY_LEN 32
/* "20150830T123600Z" */
#define JN_SIGV4_AMZ_DATE_LEN 16
/* "20150830", the first 8 characters of an X-Amz-Date */
#define JN_SIGV4_DATE_LEN 8
#define JN_SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"

enum {
    JN_SIGV4_NORMALIZE_PATH = 1u << 0, /* every service but S3 */
    JN_SIGV4_DOUBLE_ENCODE = 1u << 1,  /* every service but S3 */
    JN_SIGV4_CONTENT_SHA256 = 1u << 2, /* add and sign x-amz-content-sha256 (S3) */
    /* Add X-Amz-Security-Token without signing it (services that expect the
     * token appended after signing). */
    JN_SIGV4_UNSIGNED_TOKEN = 1u << 3,
};
#define JN_SIGV4_FLAGS_DEFAULT (JN_SIGV4_NORMALIZE_PATH | JN_SIGV4_DOUBLE_ENCODE)
#define JN_SIGV4_FLAGS_S3 JN_SIGV4_CONTENT_SHA256

typedef struct {
    const char *name;
    const char *value;
} jn_sigv4_header_t;

typedef struct {
    const char *method;
    const char *path;  /* before '?'; NULL or "" means "/" */
    const char *query; /* after '?', without it; NULL or "" when none */
    /* Headers as sent, duplicates allowed. Authorization and X-Amz-Date are
     * refused (the signer sets them), as are X-Amz-Security-Token with a
     * session token and x-amz-content-sha256 with JN_SIGV4_CONTENT_SHA256. */
    const jn_sigv4_header_t *headers;
    size_t nheaders;
    const void *payload;
    size_t payload_len;
    /* When set, used instead of hashing `payload`: 64 lower-case hex digits or
     * a literal such as JN_SIGV4_UNSIGNED_PAYLOAD. */
    const char *payload_hash;
} jn_sigv4_request_t;

typedef struct {
    const char *region;
    const char *service;
    const char *access_key_id;
    const char *secret_access_key; /* unused when signing_key is set */
    const char *session_token;     /* NULL or "" when none */
    /* Optional JN_SIGV4_KEY_LEN bytes from jn_sigv4_signing_key for the same
     * date, region and service (callers may cache it for the day). */
    const uint8_t *signing_key;
    int64_t time;         /* Unix seconds, UTC; used when amz_date is NULL */
    const char *amz_date; /* "YYYYMMDDTHHMMSSZ"; wins over `time` */
    unsigned flags;       /* JN_SIGV4_* */
} jn_sigv4_params_t;

typedef struct {
    char *canonical_request;
    char *string_to_sign;
    char *signature;        /* 64 lower-case hex digits */
    char *signed_headers;   /* "host;x-amz-date" */
    char *credential_scope; /* "20150830/us-east-1/iam/aws4_request" */
    char *authorization;
    char *amz_date;
    char *security_token; /* NULL without a session token */
    char *content_sha256; /* NULL without JN_SIGV4_CONTENT_SHA256 */
    /* The headers to add to the request: X-Amz-Date, then X-Amz-Security-Token
     * and x-amz-content-sha256 when present, then Authorization. Names are
     * static; values point at the fields above. */
    jn_sigv4_header_t add[4];
    size_t nadd;
} jn_sigv4_result_t;

/* Signs `req`. On failure `*res` is left zeroed (freeing it is harmless). */
int jn_sigv4_sign(const jn_sigv4_request_t *req, const jn_sigv4_params_t *params,
                  jn_sigv4_result_t *res, char *err, size_t errlen);
/* Releases everything in `res` and zeroes it; credential-bearing strings are
 * wiped first. */
void jn_sigv4_result_free(jn_sigv4_result_t *res);

/* kSigning = HMAC chain "AWS4"+secret -> date -> region -> service ->
 * "aws4_request". `date` is "YYYYMMDD". Valid for that UTC day only. */
int jn_sigv4_signing_key(const char *secret, const char *date, const char *region,
                         const char *service, uint8_t out[JN_SIGV4_KEY_LEN], char *err,
                         size_t errlen);

/* Formats Unix seconds as an X-Amz-Date ("YYYYMMDDTHHMMSSZ"). */
int jn_sigv4_amz_date(int64_t unix_seconds, char out[JN_SIGV4_AMZ_DATE_LEN + 1], char *err,
                      size_t errlen);

#endif
