/* AWS Security Token Service (STS) AssumeRole on the wire: the request's
 * form body, and the response's XML read strictly.
 *
 * A response is at most JN_STS_MAX_RESPONSE bytes of XML 1.0: an optional XML
 * declaration, then one root element. Comments and whitespace between
 * elements are accepted; a document type declaration (so no entity beyond the
 * five predefined ones and character references), CDATA sections and
 * processing instructions are refused, as is an element that mixes text with
 * elements. Elements Junction does not use (AssumedRoleUser, PackedPolicySize,
 * SourceIdentity, ResponseMetadata, ...) are skipped; the ones it uses must
 * appear exactly once. Messages describe the structure (which element is
 * missing, at which byte the XML breaks) and never quote a value.
 */
#ifndef JUNCTION_STS_H
#define JUNCTION_STS_H

#include <stddef.h>
#include <stdint.h>

#define JN_STS_VERSION "2011-06-15"
#define JN_STS_MAX_RESPONSE 65536

typedef struct {
    const char *role_arn;
    const char *session_name;
    int duration_seconds;
    const char *external_id; /* NULL: none */
} jn_sts_assume_role_t;

/* The form body of an AssumeRole call:
 * Action=AssumeRole&Version=2011-06-15&RoleArn=..&RoleSessionName=..
 * &DurationSeconds=..[&ExternalId=..], values percent-encoded (RFC 3986).
 * *body is malloc'ed (the caller wipes it: it carries the external id).
 * Returns 0, or -1 (missing argument, out of memory). */
int jn_sts_assume_role_body(const jn_sts_assume_role_t *p, char **body, size_t *len);

typedef struct {
    /* The three strings share one allocation in locked memory (secmem). */
    char *access_key_id;
    char *secret_access_key;
    char *session_token;
    int64_t expiration; /* Unix seconds */
} jn_sts_credentials_t;

/* AssumeRoleResponse/AssumeRoleResult/Credentials: AccessKeyId (16 to 128
 * letters and digits), SecretAccessKey and SessionToken (printable ASCII
 * without spaces), Expiration (ISO 8601: YYYY-MM-DDThh:mm:ss, optional
 * fraction, Z or +hh:mm/-hh:mm). 0 with *out filled, or -1 with err and *out
 * zeroed. */
int jn_sts_parse_credentials(const char *xml, size_t len, jn_sts_credentials_t *out, char *err,
                             size_t errlen);
/* Wipes and releases the credentials; harmless on a zeroed struct. */
void jn_sts_credentials_free(jn_sts_credentials_t *c);

typedef struct {
    char code[64];     /* "AccessDenied": letters, digits and ._:- */
    char message[256]; /* printable ASCII, shortened with "..."; "" when absent */
} jn_sts_error_t;

/* ErrorResponse/Error: Code (required) and Message (optional). 0 with *out
 * filled, or -1 with err when the body is not such a document. */
int jn_sts_parse_error(const char *xml, size_t len, jn_sts_error_t *out, char *err, size_t errlen);

#endif
