/* JSON Web Tokens (RFC 7519) in compact JWS form (RFC 7515), on OpenSSL 3.
 *
 * Signing is what the core does for connectors that authenticate with a
 * private key (GitHub Apps, Google service accounts, Salesforce JWT bearer,
 * private_key_jwt client assertions): the key never leaves the core.
 * Algorithms: RS256 and PS256 (RSA, at least 2048 bits; PS256 with MGF1-SHA256
 * and a 32-byte salt, RFC 7518 section 3.5) and ES256 (EC P-256, raw R||S).
 *
 * Verification is RS256 only, for tokens that third parties send us (Google
 * Pub/Sub push OIDC tokens). The token's alg must be exactly "RS256": "none",
 * HMAC algorithms and everything else are refused before any key is touched.
 *
 * Functions returning int return 0 on success and -1 with a message in `err`
 * unless stated otherwise. Messages never contain key material or tokens.
 * Times are NumericDate values: seconds since the Unix epoch.
 */
#ifndef JUNCTION_JWT_H
#define JUNCTION_JWT_H

#include <stddef.h>
#include <stdint.h>

#define JN_JWT_GOOGLE_TOKEN_URL "https://oauth2.googleapis.com/token"

/* Base64url SHA-1 (x5t) and SHA-256 (x5t#S256) thumbprints plus NUL. */
#define JN_JWT_X5T_SIZE 28
#define JN_JWT_X5T_S256_SIZE 44

typedef struct jn_jwt_key jn_jwt_key_t;

/* Optional JOSE header parameters; NULL members are left out. */
typedef struct {
    const char *kid;
    const char *x5t;      /* base64url SHA-1 thumbprint of the DER certificate */
    const char *x5t_s256; /* "x5t#S256": base64url SHA-256 thumbprint */
} jn_jwt_header_t;

/* Loads an unencrypted PEM private key: PKCS#8 ("PRIVATE KEY"), PKCS#1
 * ("RSA PRIVATE KEY", as GitHub issues them) or SEC1 ("EC PRIVATE KEY").
 * `pem` need not be NUL-terminated; other PEM blocks around the key (a
 * certificate chain) are skipped. Accepts RSA >= 2048 bits and EC P-256. */
int jn_jwt_key_load_pem(const char *pem, size_t len, jn_jwt_key_t **key, char *err, size_t errlen);
/* Wipes and frees; NULL is a no-op. */
void jn_jwt_key_free(jn_jwt_key_t *key);
/* "RSA" or "EC" (NULL for a NULL key). */
const char *jn_jwt_key_type(const jn_jwt_key_t *key);
/* Header parameters put in every token signed with this key by the
 * convenience constructors below, and by jn_jwt_sign when its `hdr` is NULL.
 * Strings are copied; hdr == NULL clears them. Set before sharing the key:
 * a key is otherwise read-only and may sign from several threads. */
int jn_jwt_key_set_header(jn_jwt_key_t *key, const jn_jwt_header_t *hdr, char *err, size_t errlen);

/* Thumbprints of the first certificate in `cert_pem` (x5t and x5t#S256, RFC
 * 7515 sections 4.1.7-8); either output may be NULL. With `key` non-NULL the
 * certificate's public key must be that key's, so that a mismatched pair is
 * caught here rather than as a provider's opaque rejection. */
int jn_jwt_cert_thumbprints(const char *cert_pem, size_t len, const jn_jwt_key_t *key,
                            char x5t[JN_JWT_X5T_SIZE], char x5t_s256[JN_JWT_X5T_S256_SIZE],
                            char *err, size_t errlen);

/* Signs `claims_json`, which must be one JSON object (e.g. from
 * jn_jwt_claims_json), with `alg` "RS256" or "PS256" (RSA keys) or "ES256"
 * (EC keys). The header is {"alg":...,"typ":"JWT"} followed by the non-NULL
 * members of `hdr`, or of the key's header when `hdr` is NULL. `*token` is a
 * malloc'ed NUL-terminated compact JWS; release it with jn_jwt_token_free. */
int jn_jwt_sign(const jn_jwt_key_t *key, const char *alg, const jn_jwt_header_t *hdr,
                const char *claims_json, char **token, char *err, size_t errlen);
/* Wipes (a signed token is a credential until it expires) and frees. */
void jn_jwt_token_free(char *token);

/* Claims builder. A zeroed struct is an empty claim set. */
enum {
    JN_JWT_IAT = 1 << 0,
    JN_JWT_NBF = 1 << 1,
    JN_JWT_EXP = 1 << 2,
};

typedef struct {
    const char *name;
    const char *value;
} jn_jwt_claim_t;

typedef struct {
    const char *iss; /* NULL members are left out */
    const char *sub;
    const char *aud;
    const char *scope;
    const char *jti;
    int random_jti; /* non-zero: jti is 32 random hex characters (jti must be NULL) */
    unsigned times; /* which of iat, nbf, exp are present: JN_JWT_IAT | ... */
    int64_t iat;
    int64_t nbf;
    int64_t exp;
    const jn_jwt_claim_t *extra; /* more string claims */
    size_t extra_count;
} jn_jwt_claims_t;

/* Builds the claims object in the member order iss, sub, aud, scope, jti,
 * iat, nbf, exp, extras. Strings must be valid UTF-8 and are escaped; names
 * must be unique; times must lie in 0..253402300799 (year 9999) and exp must
 * come after iat and nbf. `*json` is malloc'ed. */
int jn_jwt_claims_json(const jn_jwt_claims_t *claims, char **json, char *err, size_t errlen);

/* GitHub App JWT, RS256: iss = app_id (the client id or the numeric app id,
 * as a string), iat = now - 60 (GitHub's allowance for clock drift), exp =
 * now + 540, so that exp - iat stays within GitHub's 10 minutes. */
int jn_jwt_github_app(const jn_jwt_key_t *key, const char *app_id, int64_t now, char **token,
                      char *err, size_t errlen);
/* Google service-account assertion, RS256: iss = client_email, scope (space
 * separated), aud = JN_JWT_GOOGLE_TOKEN_URL, iat = now, exp = now + lifetime
 * (1..3600), and sub (the user impersonated with domain-wide delegation)
 * only when `sub` is non-NULL. */
int jn_jwt_google_service_account(const jn_jwt_key_t *key, const char *client_email,
                                  const char *scope, const char *sub, int64_t now, int64_t lifetime,
                                  char **token, char *err, size_t errlen);
/* Salesforce JWT bearer assertion, RS256: iss = consumer_key, sub = username,
 * aud = audience (https://login.salesforce.com, https://test.salesforce.com or
 * an Experience Cloud site URL), exp = now + 180 (Salesforce's 3 minutes). */
int jn_jwt_salesforce(const jn_jwt_key_t *key, const char *consumer_key, const char *username,
                      const char *audience, int64_t now, char **token, char *err, size_t errlen);
/* private_key_jwt client assertion (RFC 7523 section 2.2, OpenID Connect
 * Core section 9): iss = sub = client_id, aud = token_endpoint, a random jti,
 * iat = nbf = now, exp = now + lifetime (1..3600; keep it to minutes). For
 * Entra ID certificates use "PS256" with the key's header holding x5t#S256. */
int jn_jwt_client_assertion(const jn_jwt_key_t *key, const char *alg, const char *client_id,
                            const char *token_endpoint, int64_t now, int64_t lifetime, char **token,
                            char *err, size_t errlen);

/* Verification results: 0 or one of these (negative) codes. */
typedef enum {
    JN_JWT_OK = 0,
    JN_JWT_EINVAL = -1,     /* bad arguments (a programming error) */
    JN_JWT_ENOMEM = -2,     /* out of memory */
    JN_JWT_EMALFORMED = -3, /* not 3 base64url parts of JSON objects, duplicate members, > 16 KiB */
    JN_JWT_EUNSIGNED = -4,  /* alg "none" */
    JN_JWT_EALG = -5,       /* any other alg than RS256 (HS256 included), or crit */
    JN_JWT_EKEY = -6,       /* no key for the token's kid, or an unusable key */
    JN_JWT_ESIGNATURE = -7, /* the signature does not verify with any candidate key */
    JN_JWT_ECLAIMS = -8,    /* exp missing, or a time/aud/iss claim of the wrong type */
    JN_JWT_EEXPIRED = -9,   /* now >= exp + leeway */
    JN_JWT_ENOTYET = -10,   /* now + leeway < nbf, or iat > now + leeway */
    JN_JWT_EAUDIENCE = -11, /* aud missing or not the expected audience */
    JN_JWT_EISSUER = -12,   /* iss missing or not an accepted issuer */
} jn_jwt_status_t;

/* Short name of a status ("expired", "bad signature", ...). */
const char *jn_jwt_status_str(int status);

/* A verification key. Either `pem` (NUL-terminated "PUBLIC KEY", "RSA PUBLIC
 * KEY" or "CERTIFICATE"; a certificate only carries the key, its dates and
 * issuer are not checked) or the JWK members `n` and `e` (base64url). A key
 * with a `kid` is skipped for tokens carrying another kid; a token without a
 * kid is tried against every key. RSA keys below 2048 bits are refused. */
typedef struct {
    const char *kid;
    const char *pem;
    const char *n;
    const char *e;
} jn_jwt_pubkey_t;

/* Checks that a verification key loads (PEM or n/e, RSA of at least 2048
 * bits) without a token: 0, or JN_JWT_EKEY / JN_JWT_ENOMEM with a message.
 * For configuration checks, and to tell an unusable configured key from a
 * token whose kid has no key. */
int jn_jwt_pubkey_check(const jn_jwt_pubkey_t *key, char *err, size_t errlen);

/* Verifies an RS256 compact JWS: header, signature over the candidate keys,
 * then exp (required), nbf and iat against `now` with `leeway` seconds
 * (0..3600), aud (a string or an array of strings) against `audience`, and iss
 * against `issuers`. On JN_JWT_OK, `*claims_json` (when non-NULL) is the
 * malloc'ed claims object. Returns a jn_jwt_status_t with a message in err. */
int jn_jwt_verify_rs256(const char *token, const jn_jwt_pubkey_t *keys, size_t key_count,
                        const char *audience, const char *const *issuers, size_t issuer_count,
                        int64_t now, int64_t leeway, char **claims_json, char *err, size_t errlen);

/* A JWK Set document (RFC 7517 section 5), e.g. Google's OAuth 2.0 certs.
 * Keys with kty "RSA" whose use (when present) is "sig" and whose alg (when
 * present) is "RS256" are kept; others are skipped. No usable key is an error. */
typedef struct jn_jwt_jwks jn_jwt_jwks_t;

int jn_jwt_jwks_parse(const char *json, size_t len, jn_jwt_jwks_t **jwks, char *err, size_t errlen);
/* The kept keys, valid until jn_jwt_jwks_free. */
const jn_jwt_pubkey_t *jn_jwt_jwks_keys(const jn_jwt_jwks_t *jwks, size_t *count);
void jn_jwt_jwks_free(jn_jwt_jwks_t *jwks);

#endif
