/* A job: one connector function running as a coroutine in its own sandbox on
 * the runtime's loop. ctx.http and ctx.sleep yield the coroutine; the loop
 * resumes it when the response or the timer arrives.
 *
 * Lifecycle: jn_job_start -> (loop runs) -> hooks.done(job) exactly once ->
 * the job releases itself after done returns. Read results inside done.
 */
#ifndef JUNCTION_JOB_H
#define JUNCTION_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "connector.h"
#include "junction/auth.h"
#include "junction/store.h"
#include "runtime.h"

typedef struct jn_job jn_job_t;

typedef struct {
    /* An evidence item the connector emitted; return 0, or -1 with a message
     * in err to fail the ctx.emit call. */
    int (*emit)(void *ud, jn_job_t *job, const jn_evidence_t *item, char *err, size_t errlen);
    void (*done)(void *ud, jn_job_t *job);
    void *ud;
} jn_job_hooks_t;

typedef struct {
    jn_connector_t *connector;
    /* Connector function to call: "collect_evidence", "test_connection", ...
     * NULL runs the connector source itself as the job's function, with ctx as
     * its argument (used by specs to exercise the API). */
    const char *entry;
    /* JSON array of arguments passed after ctx; NULL: none. */
    const char *args_json;
    const char *config_json;     /* ctx.config; NULL: {} */
    const char *checkpoint_json; /* ctx.checkpoint.get(); NULL: none stored */
    const char *job_id;          /* NULL: generated */
    const char *run_id;          /* NULL: the job id */
    const char *organization_id;
    const char *integration_id;
    /* Credential headers ("Name: value"), added by the core to requests bound
     * for the connector's egress hosts. Never visible to Lua. */
    const char *const *auth_headers;
    size_t nauth_headers;
    /* Credential applied by the core (jn_auth_apply) to each request bound for
     * an egress host unless the request passes auth = false. Borrowed: it must
     * stay valid until hooks.done has been called. Its secret values are known
     * to the global redactor while the job exists. NULL: none. */
    const jn_auth_t *auth;
    jn_sandbox_limits_t limits; /* zero fields: the runtime's defaults */
    uint64_t timeout_ns;        /* 0: the runtime's default */
    jn_job_hooks_t hooks;
} jn_job_opts_t;

int jn_job_start(jn_runtime_t *rt, const jn_job_opts_t *opts, jn_job_t **out, char *err,
                 size_t errlen);
/* Stop a running job; done is called with status cancelled. */
void jn_job_cancel(jn_job_t *job, const char *reason);

jn_job_status_t jn_job_status(const jn_job_t *job);
const char *jn_job_id(const jn_job_t *job);
const char *jn_job_error(const jn_job_t *job); /* redacted, NULL on success */
/* JSON of the entry function's first return value (NULL when none). */
const char *jn_job_result_json(const jn_job_t *job);
/* JSON of the checkpoint the job set, NULL when it set none. */
const char *jn_job_checkpoint_json(const jn_job_t *job);
int64_t jn_job_items(const jn_job_t *job);
int64_t jn_job_requests(const jn_job_t *job);
size_t jn_job_memory_peak(const jn_job_t *job);
uint64_t jn_job_cpu_ns(const jn_job_t *job);
int64_t jn_job_started_ms(const jn_job_t *job);
const jn_connector_t *jn_job_connector(const jn_job_t *job);
const jn_job_opts_t *jn_job_opts(const jn_job_t *job);

#endif
