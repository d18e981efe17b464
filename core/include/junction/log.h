/* Structured JSON logging.
 *
 * Every line is one JSON object on the log stream:
 *   {"ts":"2026-11-25T16:55:09.123Z","level":"info","msg":"...", <fields>}
 * Every message and string field goes through the redactor before it is
 * written, so a secret handed to the logger by mistake never reaches the log.
 */
#ifndef JUNCTION_LOG_H
#define JUNCTION_LOG_H

#include <stddef.h>
#include <stdio.h>

typedef enum {
    JN_LOG_DEBUG = 0,
    JN_LOG_INFO = 1,
    JN_LOG_WARN = 2,
    JN_LOG_ERROR = 3,
    JN_LOG_OFF = 4
} jn_log_level_t;

/* One structured field. `value` is a string unless `is_number`/`is_raw_json`.
 * A NULL value is written as null; a field with a NULL key is skipped. Raw
 * JSON is redacted, then validated and compacted onto the line; if it is not
 * valid JSON it is written as a string instead. Fields whose key names a
 * credential (jn_redact_is_sensitive_key: password, token, authorization, ...)
 * have their value replaced by "[REDACTED]" whole. */
typedef struct {
    const char *key;
    const char *value;
    int is_raw_json; /* value is already valid JSON (number, bool, object) */
} jn_log_field_t;

/* Redactor: rewrite `in` (len bytes) into a newly malloc'ed string with every
 * secret scrubbed, or return NULL to keep it as it is. */
typedef char *(*jn_log_redactor_fn)(void *ud, const char *in, size_t len);

void jn_log_set_level(jn_log_level_t level);
jn_log_level_t jn_log_get_level(void);
/* Parse "debug"/"info"/"warn"/"error"/"off" (case-insensitive, "warning" too);
 * returns -1 when unknown. The default level is info. */
int jn_log_level_parse(const char *name);
const char *jn_log_level_name(jn_log_level_t level);
/* Where lines go (stderr by default). Not owned. */
void jn_log_set_stream(FILE *stream);
/* The default is (jn_redact_log_hook, NULL), i.e. the global redactor; passing
 * a NULL fn restores that default rather than disabling redaction. The
 * redactor runs under the logger's lock and must not log. */
void jn_log_set_redactor(jn_log_redactor_fn fn, void *ud);

/* Write one line with `nfields` fields. */
void jn_log_fields(jn_log_level_t level, const char *msg, const jn_log_field_t *fields,
                   size_t nfields);
/* printf-style message, no fields. */
void jn_log(jn_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define jn_log_debug(...) jn_log(JN_LOG_DEBUG, __VA_ARGS__)
#define jn_log_info(...) jn_log(JN_LOG_INFO, __VA_ARGS__)
#define jn_log_warn(...) jn_log(JN_LOG_WARN, __VA_ARGS__)
#define jn_log_error(...) jn_log(JN_LOG_ERROR, __VA_ARGS__)

#endif
