/* Redaction of secrets from text that leaves the process (logs, errors, job
 * records, API responses).
 *
 * Two mechanisms:
 *  - known secrets: exact values registered by the code that handles them
 *    (tokens read from a file, vault material); every occurrence is replaced;
 *  - secret-shaped strings: patterns such as "Bearer xxx", GitHub tokens
 *    (ghp_/gho_/ghs_/github_pat_), Slack tokens (xox?-), AWS access key ids,
 *    "password=..."/"token=..." query or JSON values, PEM private keys.
 * The replacement is "[REDACTED]".
 */
#ifndef JUNCTION_REDACT_H
#define JUNCTION_REDACT_H

#include <stddef.h>

typedef struct jn_redactor jn_redactor_t;

jn_redactor_t *jn_redactor_create(void);
void jn_redactor_destroy(jn_redactor_t *r);
/* Register a secret value (copied; wiped on removal/destroy). Values shorter
 * than 4 bytes are ignored (they would redact ordinary text). Registrations
 * are counted: a value added twice stays until removed twice. Returns 0, or
 * -1 when out of memory. */
int jn_redactor_add_secret(jn_redactor_t *r, const char *secret, size_t len);
void jn_redactor_remove_secret(jn_redactor_t *r, const char *secret, size_t len);
/* Returns a malloc'ed scrubbed copy, or NULL when nothing had to change.
 * With r == NULL only the secret-shaped patterns apply. If memory runs out
 * the whole text is replaced by JN_REDACTED rather than returned unscrubbed. */
char *jn_redactor_scrub(jn_redactor_t *r, const char *in, size_t len);
/* The known secrets only, not the patterns: for data rather than messages,
 * such as a provider's response body, where a secret-shaped value (an AWS
 * access key id in an IAM listing) is content. Works on bytes (the text may
 * hold NULs). Returns a malloc'ed copy, NUL-terminated, its length in
 * *out_len, or NULL when nothing had to change (or r is NULL). If memory
 * runs out the whole text is replaced by JN_REDACTED. */
char *jn_redactor_scrub_known(jn_redactor_t *r, const char *in, size_t len, size_t *out_len);
/* Always returns a malloc'ed copy (scrubbed or not). */
char *jn_redactor_scrub_dup(jn_redactor_t *r, const char *in, size_t len);

/* 1 when a field, header or parameter with this name carries a credential
 * (password, token, authorization, x-api-key, db_password, ...): the logger
 * replaces such field values whole. */
int jn_redact_is_sensitive_key(const char *name, size_t len);

/* The process-wide redactor used by the logger and error paths. */
jn_redactor_t *jn_redactor_global(void);
/* Matches jn_log_redactor_fn: pass (jn_redact_log_hook, redactor) to jn_log_set_redactor.
 * A NULL `ud` means the global redactor (the logger's default). */
char *jn_redact_log_hook(void *ud, const char *in, size_t len);

#define JN_REDACTED "[REDACTED]"

#endif
