/* Backend-independent part of the store: dispatch onto the operations table. */
#include "junction/store.h"

#include <string.h>

static const char *const status_names[] = {
    [JN_JOB_QUEUED] = "queued",   [JN_JOB_RUNNING] = "running", [JN_JOB_SUCCEEDED] = "succeeded",
    [JN_JOB_PARTIAL] = "partial", [JN_JOB_FAILED] = "failed",   [JN_JOB_CANCELLED] = "cancelled",
};

const char *jn_job_status_name(jn_job_status_t status)
{
    if ((unsigned)status >= sizeof(status_names) / sizeof(status_names[0]))
        return "unknown";
    return status_names[status];
}

int jn_job_status_parse(const char *name)
{
    size_t i;

    if (name == NULL)
        return -1;
    for (i = 0; i < sizeof(status_names) / sizeof(status_names[0]); i++) {
        if (strcmp(status_names[i], name) == 0)
            return (int)i;
    }
    return -1;
}

void jn_store_close(jn_store_t *s)
{
    if (s != NULL)
        s->ops->close(s);
}

const char *jn_store_errmsg(const jn_store_t *s)
{
    return s != NULL ? s->errmsg : "no store";
}

int jn_store_schema_version(jn_store_t *s)
{
    return s->ops->schema_version(s);
}

int jn_store_begin(jn_store_t *s)
{
    return s->ops->begin(s);
}

int jn_store_commit(jn_store_t *s)
{
    return s->ops->commit(s);
}

int jn_store_rollback(jn_store_t *s)
{
    return s->ops->rollback(s);
}

int jn_store_checkpoint_get(jn_store_t *s, const char *integration_id, char **cursor)
{
    return s->ops->checkpoint_get(s, integration_id, cursor);
}

int jn_store_checkpoint_set(jn_store_t *s, const char *integration_id, const char *cursor)
{
    return s->ops->checkpoint_set(s, integration_id, cursor);
}

int jn_store_evidence_put(jn_store_t *s, const jn_evidence_t *item, int *inserted)
{
    return s->ops->evidence_put(s, item, inserted);
}

int jn_store_evidence_count(jn_store_t *s, const char *integration_id, int64_t *count)
{
    return s->ops->evidence_count(s, integration_id, count);
}

int jn_store_evidence_each(jn_store_t *s, const char *integration_id, jn_store_evidence_fn fn,
                           void *ud)
{
    return s->ops->evidence_each(s, integration_id, fn, ud);
}

int jn_store_job_put(jn_store_t *s, const jn_job_record_t *job)
{
    return s->ops->job_put(s, job);
}

int jn_store_job_get(jn_store_t *s, const char *id, jn_job_record_t *out, char **strings)
{
    return s->ops->job_get(s, id, out, strings);
}
