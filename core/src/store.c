/* Backend-independent part of the store: dispatch onto the operations table. */
#include "junction/store.h"

#include <stdio.h>
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

/* The vault and audit operations were added with schema version 2; a backend
 * that lacks them fails cleanly instead of crashing on a NULL slot. */
static int missing_op(jn_store_t *s, const char *op)
{
    snprintf(s->errmsg, sizeof(s->errmsg), "%s: not supported by the %s store", op, s->ops->name);
    return -1;
}

#define DISPATCH(op, ...) (s->ops->op != NULL ? s->ops->op(s, __VA_ARGS__) : missing_op(s, #op))

int jn_store_in_transaction(jn_store_t *s)
{
    return s->ops->in_transaction != NULL ? s->ops->in_transaction(s) : 0;
}

int jn_store_org_key_insert(jn_store_t *s, const jn_org_key_t *key)
{
    return DISPATCH(org_key_insert, key);
}

int jn_store_org_key_rewrap(jn_store_t *s, const jn_org_key_t *key, const char *old_master_key_id)
{
    return DISPATCH(org_key_rewrap, key, old_master_key_id);
}

int jn_store_org_key_retire(jn_store_t *s, const char *org_id, int64_t dek_version)
{
    return DISPATCH(org_key_retire, org_id, dek_version);
}

int jn_store_org_key_each(jn_store_t *s, const char *org_id, jn_store_org_key_fn fn, void *ud)
{
    return DISPATCH(org_key_each, org_id, fn, ud);
}

int jn_store_credential_insert(jn_store_t *s, const jn_credential_record_t *cred)
{
    return DISPATCH(credential_insert, cred);
}

int jn_store_credential_reencrypt(jn_store_t *s, const jn_credential_record_t *cred,
                                  int64_t old_dek_version)
{
    return DISPATCH(credential_reencrypt, cred, old_dek_version);
}

int jn_store_credential_set_state(jn_store_t *s, const char *org_id, const char *id,
                                  int64_t version, const char *state, int64_t rotated_ms)
{
    return DISPATCH(credential_set_state, org_id, id, version, state, rotated_ms);
}

int jn_store_credential_delete(jn_store_t *s, const char *org_id, const char *id, int64_t version)
{
    return DISPATCH(credential_delete, org_id, id, version);
}

int jn_store_credential_each(jn_store_t *s, const jn_credential_filter_t *filter,
                             jn_store_credential_fn fn, void *ud)
{
    return DISPATCH(credential_each, filter, fn, ud);
}

int jn_store_audit_insert(jn_store_t *s, const jn_audit_record_t *rec)
{
    return DISPATCH(audit_insert, rec);
}

int jn_store_audit_last(jn_store_t *s, int64_t *seq, char hash[65])
{
    return DISPATCH(audit_last, seq, hash);
}

int jn_store_audit_each(jn_store_t *s, int64_t from_seq, jn_store_audit_fn fn, void *ud)
{
    return DISPATCH(audit_each, from_seq, fn, ud);
}

/* ---- integrations, queue, job history (schema version 3) ---- */

int jn_store_integration_insert(jn_store_t *s, const jn_integration_t *it)
{
    return DISPATCH(integration_insert, it);
}

int jn_store_integration_upsert(jn_store_t *s, const jn_integration_t *it, int *changed)
{
    return DISPATCH(integration_upsert, it, changed);
}

int jn_store_integration_get(jn_store_t *s, const char *id, jn_integration_t *out, char **strings)
{
    return DISPATCH(integration_get, id, out, strings);
}

int jn_store_integration_each(jn_store_t *s, const jn_integration_filter_t *f,
                              jn_store_integration_fn fn, void *ud)
{
    return DISPATCH(integration_each, f, fn, ud);
}

int jn_store_integration_set_enabled(jn_store_t *s, const char *id, int enabled)
{
    return DISPATCH(integration_set_enabled, id, enabled);
}

int jn_store_integration_delete(jn_store_t *s, const char *id)
{
    return DISPATCH(integration_delete, id);
}

int jn_store_integration_mark_slot(jn_store_t *s, const char *id, int64_t slot_ms)
{
    return DISPATCH(integration_mark_slot, id, slot_ms);
}

int jn_store_queue_insert(jn_store_t *s, const jn_queue_enqueue_t *in, int64_t now_ms,
                          jn_queue_enqueued_t *out)
{
    return DISPATCH(queue_insert, in, now_ms, out);
}

int jn_store_queue_claim(jn_store_t *s, const jn_store_claim_t *c, jn_queue_job_t *out)
{
    return DISPATCH(queue_claim, c, out);
}

int jn_store_queue_finish(jn_store_t *s, const jn_store_queue_finish_t *f)
{
    return DISPATCH(queue_finish, f);
}

int jn_store_queue_extend(jn_store_t *s, const char *consumer, int64_t until_ms)
{
    return DISPATCH(queue_extend, consumer, until_ms);
}

int jn_store_queue_cancel(jn_store_t *s, const char *id, int64_t now_ms, jn_queue_state_t *before)
{
    return DISPATCH(queue_cancel, id, now_ms, before);
}

int jn_store_queue_cancelled_each(jn_store_t *s, const char *consumer, jn_queue_id_fn fn, void *ud)
{
    return DISPATCH(queue_cancelled_each, consumer, fn, ud);
}

int jn_store_queue_get(jn_store_t *s, const char *id, jn_queue_job_t *out)
{
    return DISPATCH(queue_get, id, out);
}

int jn_store_queue_group_running(jn_store_t *s, const char *group_key, char id[JN_QUEUE_ID_LEN])
{
    return DISPATCH(queue_group_running, group_key, id);
}

int jn_store_queue_each(jn_store_t *s, jn_queue_state_t state, const char *provider,
                        jn_queue_job_fn fn, void *ud)
{
    return DISPATCH(queue_each, state, provider, fn, ud);
}

int jn_store_queue_stats(jn_store_t *s, int64_t now_ms, jn_queue_stat_fn fn, void *ud)
{
    return DISPATCH(queue_stats, now_ms, fn, ud);
}

int jn_store_job_each(jn_store_t *s, const jn_job_filter_t *f, jn_store_job_fn fn, void *ud)
{
    return DISPATCH(job_each, f, fn, ud);
}

int jn_store_job_changes_compute(jn_store_t *s, const char *job_id, const char *integration_id,
                                 int complete, jn_job_changes_t *out)
{
    return DISPATCH(job_changes_compute, job_id, integration_id, complete, out);
}

int jn_store_job_changes_each(jn_store_t *s, const char *job_id, const char *change, int64_t limit,
                              jn_store_change_fn fn, void *ud)
{
    return DISPATCH(job_changes_each, job_id, change, limit, fn, ud);
}

int jn_store_evidence_export(jn_store_t *s, const jn_evidence_filter_t *f, jn_store_evidence_fn fn,
                             void *ud)
{
    return DISPATCH(evidence_export, f, fn, ud);
}

int jn_store_run_evidence_count(jn_store_t *s, const char *run_id, int64_t *count)
{
    return DISPATCH(run_evidence_count, run_id, count);
}

int jn_store_api_token_insert(jn_store_t *s, const jn_api_token_t *t)
{
    return DISPATCH(api_token_insert, t);
}

int jn_store_api_token_get(jn_store_t *s, const char *id, jn_store_api_token_fn fn, void *ud)
{
    return DISPATCH(api_token_get, id, fn, ud);
}

int jn_store_api_token_each(jn_store_t *s, const char *org, jn_store_api_token_fn fn, void *ud)
{
    return DISPATCH(api_token_each, org, fn, ud);
}

int jn_store_api_token_revoke(jn_store_t *s, const char *id, int64_t now_ms)
{
    return DISPATCH(api_token_revoke, id, now_ms);
}

int jn_store_evidence_page(jn_store_t *s, const char *integration_id, const char *resource_type,
                           int64_t after_seq, int64_t limit, jn_store_evidence_page_fn fn, void *ud)
{
    return DISPATCH(evidence_page, integration_id, resource_type, after_seq, limit, fn, ud);
}

int jn_store_job_counts(jn_store_t *s, jn_store_job_count_fn fn, void *ud)
{
    return DISPATCH(job_counts, fn, ud);
}

int jn_store_connector_version_put(jn_store_t *s, const jn_connector_version_t *v)
{
    return DISPATCH(connector_version_put, v);
}

int jn_store_connector_version_get(jn_store_t *s, const char *provider, const char *sha256,
                                   jn_store_connector_version_fn fn, void *ud)
{
    return DISPATCH(connector_version_get, provider, sha256, fn, ud);
}

int jn_store_connector_deploy_insert(jn_store_t *s, jn_connector_deploy_t *d)
{
    return DISPATCH(connector_deploy_insert, d);
}

int jn_store_connector_deploy_each(jn_store_t *s, const char *provider, int64_t limit,
                                   jn_store_connector_deploy_fn fn, void *ud)
{
    return DISPATCH(connector_deploy_each, provider, limit, fn, ud);
}

int jn_store_connector_deploy_get(jn_store_t *s, int64_t id, jn_store_connector_deploy_fn fn,
                                  void *ud)
{
    return DISPATCH(connector_deploy_get, id, fn, ud);
}

int jn_store_connector_live_each(jn_store_t *s, jn_store_connector_deploy_fn fn, void *ud)
{
    return DISPATCH(connector_live_each, fn, ud);
}

int jn_store_connector_deploy_last(jn_store_t *s, int64_t *id)
{
    return DISPATCH(connector_deploy_last, id);
}
