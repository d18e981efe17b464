/* Webhook verification: is this request really from the provider?
 *
 * The receiver calls jn_webhook_verify before any Lua runs, with the raw
 * request, the connector's declared scheme and the integration's secrets. The
 * answer is a verdict: accept the delivery (with its delivery id for dedup and
 * its event type), answer a handshake (a challenge, with the exact response
 * to send), or reject it with a stable reason code and a precise message.
 *
 * A scheme is a declaration, not code: connectors declare it in their
 * metadata (`webhook = { scheme = "hmac", signature = {...}, ... }`, which
 * the loader encodes as JSON), and the built-in presets (github, slack,
 * standard_webhooks, okta, jira, gitlab, linear, azure_event_grid,
 * microsoft_graph, google_pubsub) are declarations of the same shape compiled
 * into the core. Three verification kinds cover them:
 *
 *   hmac   an HMAC (sha1, sha256, sha512) of a signed-content template such as
 *          "{body}", "v0:{timestamp}:{body}" or "{id}.{timestamp}.{body}", in
 *          a header (prefix or "<method>=" prefix, hex or base64, optionally
 *          several signatures in one header), with an optional timestamp and
 *          replay window;
 *   token  a shared secret sent as is (a header, a query parameter or a JSON
 *          member of the body), compared in constant time;
 *   jwt    an RS256 OIDC token (Authorization: Bearer) checked against
 *          configured public keys or a JWK Set, audience, issuers, lifetime
 *          and optionally the email claim.
 *
 * The declaration format is documented in docs/lua-api.md ("Webhook
 * verification schemes"); docs/security-model.md explains the guarantees.
 *
 * No I/O happens here. Schemes are immutable once parsed and may be shared by
 * threads; jn_webhook_verify keeps no state between calls. Messages never
 * contain a secret, a token or a signature; of what the request sent they
 * quote only lengths and counts, and for a JWT its aud, iss or kid (printable
 * ASCII, shortened).
 */
#ifndef JUNCTION_WEBHOOK_H
#define JUNCTION_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "junction/json.h"
#include "junction/jwt.h"

/* Bounds on the work one request can cause and on what is kept. */
#define JN_WEBHOOK_MAX_SECRETS 8 /* secrets per integration (rotation) */
#define JN_WEBHOOK_MAX_SECRET_LEN 4096
#define JN_WEBHOOK_MAX_SIGNATURES 16 /* signatures in one header */
#define JN_WEBHOOK_MAX_ID_LEN 256    /* delivery id and event type */
#define JN_WEBHOOK_MAX_CHALLENGE_LEN 4096

typedef struct jn_webhook_scheme jn_webhook_scheme_t;

/* Reason codes: 0 or one of these (negative) values. The names from
 * jn_webhook_reason_str are stable (metrics labels, API error codes). */
typedef enum {
    JN_WEBHOOK_OK = 0,
    JN_WEBHOOK_EINVAL = -1,               /* invalid_argument: a caller's mistake */
    JN_WEBHOOK_ENOMEM = -2,               /* out_of_memory */
    JN_WEBHOOK_ECONFIG = -3,              /* bad_configuration: no usable secret, key, audience */
    JN_WEBHOOK_EMETHOD = -4,              /* method_not_allowed: a delivery that is not a POST */
    JN_WEBHOOK_EDUPLICATE = -5,           /* duplicate_field: a header or query parameter twice */
    JN_WEBHOOK_ESIGNATURE_MISSING = -6,   /* missing_signature */
    JN_WEBHOOK_ESIGNATURE_MALFORMED = -7, /* malformed_signature: prefix, encoding, length */
    JN_WEBHOOK_ESIGNATURE_MISMATCH = -8,  /* signature_mismatch: none matched any secret */
    JN_WEBHOOK_ESIGNED_INPUT = -9,        /* missing_signed_input: e.g. webhook-id absent */
    JN_WEBHOOK_ETIMESTAMP_MISSING = -10,
    JN_WEBHOOK_ETIMESTAMP_MALFORMED = -11,
    JN_WEBHOOK_ETIMESTAMP_STALE = -12, /* stale_timestamp: outside the tolerance */
    JN_WEBHOOK_ETOKEN_MISSING = -13,
    JN_WEBHOOK_ETOKEN_MISMATCH = -14,
    JN_WEBHOOK_EJWT_MALFORMED = -15, /* not a compact JWS, or claims of the wrong type */
    JN_WEBHOOK_EJWT_ALGORITHM = -16, /* alg none, HS256 or anything but RS256 */
    JN_WEBHOOK_EJWT_KEY = -17,       /* no configured key for the token's kid */
    JN_WEBHOOK_EJWT_SIGNATURE = -18,
    JN_WEBHOOK_EJWT_EXPIRED = -19,
    JN_WEBHOOK_EJWT_NOT_YET_VALID = -20,
    JN_WEBHOOK_EJWT_AUDIENCE = -21,
    JN_WEBHOOK_EJWT_ISSUER = -22,
    JN_WEBHOOK_EJWT_EMAIL = -23,   /* email claim absent, unverified or not the expected one */
    JN_WEBHOOK_EBODY = -24,        /* malformed_body: JSON needed and not found */
    JN_WEBHOOK_ECHALLENGE = -25,   /* malformed_challenge: value absent, too long, bad bytes */
    JN_WEBHOOK_EDELIVERY_ID = -26, /* malformed_delivery_id */
    JN_WEBHOOK_EEVENT_TYPE = -27,  /* malformed_event_type */
} jn_webhook_reason_t;

/* "signature_mismatch", "stale_timestamp", ... ("unknown" otherwise). */
const char *jn_webhook_reason_str(int reason);
/* The HTTP status a receiver answers a rejection with: 401 for anything
 * about authentication (signature, timestamp, token, JWT), 400 for a request
 * that authenticated but is malformed, 405 for a method, 500 for
 * configuration and resource problems (not the sender's fault). */
int jn_webhook_reason_status(int reason);

/* Declarations.
 *
 * jn_webhook_scheme_parse takes one JSON object: the `webhook` table of a
 * connector's metadata. Its `scheme` member names a kind ("hmac", "token",
 * "jwt") or a preset; with a preset, the other members replace the preset's
 * members of the same name (false removes an optional one). Unknown members,
 * members that do not apply to the kind, and every malformed value are
 * refused with a message naming the member. */
int jn_webhook_scheme_parse(const char *json, size_t len, jn_webhook_scheme_t **scheme, char *err,
                            size_t errlen);
/* The same from an already parsed object (e.g. the "webhook" member of a
 * connector's metadata JSON). */
int jn_webhook_scheme_from_json(const jn_json_t *decl, jn_webhook_scheme_t **scheme, char *err,
                                size_t errlen);
/* A built-in preset by name, as if parsed from {"scheme": name}. */
int jn_webhook_preset(const char *name, jn_webhook_scheme_t **scheme, char *err, size_t errlen);
/* The preset's declaration (JSON text), or NULL for an unknown name. */
const char *jn_webhook_preset_json(const char *name);
/* The i-th preset's name, or NULL past the last (for listings). */
const char *jn_webhook_preset_name(size_t i);
void jn_webhook_scheme_free(jn_webhook_scheme_t *scheme);
/* "hmac", "token" or "jwt". */
const char *jn_webhook_scheme_kind(const jn_webhook_scheme_t *scheme);
/* The preset the scheme came from, or NULL for a custom declaration. */
const char *jn_webhook_scheme_preset(const jn_webhook_scheme_t *scheme);

/* Prepared HMAC keys: the digest states after each secret's padded key
 * blocks, made on first use and reused for every later delivery, so that
 * verifying one costs the hashing of its own bytes only (no key decoding,
 * no re-keying, no allocation). Kept in locked memory that is wiped when
 * freed. A cache belongs to one set of secrets and to one thread at a time:
 * pass it in jn_webhook_secrets_t.keycache; it notices a change of the
 * secrets (their count, data pointers or lengths) and prepares them again. */
typedef struct jn_webhook_keycache jn_webhook_keycache_t;
jn_webhook_keycache_t *jn_webhook_keycache_new(void);
void jn_webhook_keycache_free(jn_webhook_keycache_t *cache);

/* The integration's verification material. */
typedef struct {
    const void *data; /* need not be NUL-terminated */
    size_t len;
} jn_webhook_secret_t;

typedef struct {
    /* hmac and token: 1..JN_WEBHOOK_MAX_SECRETS secrets, any one verifies
     * (rotation: the new and the old secret side by side). Each is decoded
     * as the scheme's secret_encoding says (raw, hex, base64, whsec). */
    const jn_webhook_secret_t *secrets;
    size_t secret_count;
    /* jwt: the expected audience (required), the verification keys (PEM or
     * JWK n/e) and/or a JWK Set document, and optionally the service
     * account email the token must carry (with email_verified true). */
    const char *audience;
    const jn_jwt_pubkey_t *keys;
    size_t key_count;
    const char *jwks_json; /* NUL-terminated, or NULL */
    const char *email;
    /* hmac: optional prepared keys (NULL: the secrets are decoded and keyed
     * for each request). */
    jn_webhook_keycache_t *keycache;
} jn_webhook_secrets_t;

/* Checks the material against the scheme without a request (secrets decode,
 * are within bounds and non-empty; the JWK Set parses; an audience is set),
 * so that a credential API can refuse it when it is stored. */
int jn_webhook_secrets_check(const jn_webhook_scheme_t *scheme, const jn_webhook_secrets_t *secrets,
                             char *err, size_t errlen);

/* The request as received. A length of 0 with a non-NULL pointer means the
 * string is NUL-terminated (an empty value is "" either way). */
typedef struct {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} jn_webhook_header_t;

typedef struct {
    const char *method;                 /* "POST", "GET", ... (required) */
    const char *path;                   /* without the query; for "{path}" only */
    const char *query;                  /* raw, without '?', NUL-terminated; or NULL */
    const jn_webhook_header_t *headers; /* names compared case-insensitively */
    size_t header_count;
    const void *body; /* raw bytes as received */
    size_t body_len;
    int64_t now_ms; /* the receiver's clock, milliseconds since the Unix epoch */
} jn_webhook_request_t;

typedef enum {
    JN_WEBHOOK_REJECTED = 0,
    JN_WEBHOOK_ACCEPTED = 1,  /* enqueue it, then answer 2xx */
    JN_WEBHOOK_CHALLENGE = 2, /* answer status/content_type/response_body; enqueue nothing */
} jn_webhook_verdict_t;

typedef struct {
    jn_webhook_verdict_t verdict;
    int reason;        /* jn_webhook_reason_t: 0 unless rejected */
    int status;        /* 200 (accepted: once the delivery is enqueued), else the rejection's */
    char message[256]; /* what happened, secret-free; "" when accepted */
    int secret_index;  /* which secret verified (0-based), -1 for jwt or none */
    /* Accepted: "" when the scheme declares none or the request has none;
     * printable ASCII, at most JN_WEBHOOK_MAX_ID_LEN bytes. */
    char delivery_id[JN_WEBHOOK_MAX_ID_LEN + 1];
    char event_type[JN_WEBHOOK_MAX_ID_LEN + 1];
    /* Challenge: the response to send (content_type is a static string). */
    const char *content_type;
    char *response_body; /* malloc'ed; release with jn_webhook_result_clear */
    size_t response_len;
} jn_webhook_result_t;

/* Verifies one request. Returns 0 when the verdict is ACCEPTED or CHALLENGE,
 * otherwise the (negative) reason, also in out->reason with out->status and
 * out->message set. `out` is always initialised; clear it afterwards. */
int jn_webhook_verify(const jn_webhook_scheme_t *scheme, const jn_webhook_request_t *req,
                      const jn_webhook_secrets_t *secrets, jn_webhook_result_t *out);
/* Releases the challenge response; the result may be reused. */
void jn_webhook_result_clear(jn_webhook_result_t *result);

#endif
