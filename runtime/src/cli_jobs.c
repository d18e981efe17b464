/* junction jobs: the job records and the queue; junction evidence export.
 *
 * A job record (the jobs table) is kept up to date by whoever moves the job:
 * queued by the scheduler or `integrations sync`, running/succeeded/partial/
 * failed by the worker, cancelled by `jobs cancel` (queued jobs) or by the
 * worker (running ones). Errors in records are already redacted.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "json_canon.h"
#include "junction/clock.h"
#include "junction/redact.h"

static const char jobs_usage[] =
    "usage: junction jobs <command> [options]\n"
    "  list [--integration ID] [--status S] [--limit N]   job records, newest first\n"
    "                              (S: queued, running, succeeded, partial, failed,\n"
    "                              cancelled; N default 50, 0 for all)\n"
    "  list --dead-letter [--provider P]                  jobs dead-lettered after their\n"
    "                                                     last attempt\n"
    "  show ID [--changes N]       one job: timings, attempts, items, pages, error and the\n"
    "                              resources it added, changed and removed (N per kind,\n"
    "                              default 20)\n"
    "  cancel ID                   cancel a queued job, or stop a running one at its next\n"
    "                              yield\n"
    "  stats                       queue depth and oldest waiting job per provider and\n"
    "                              priority\n"
    "common options:\n"
    "  --format table|json         output (default table; json: one object per line)\n"
    "  --config FILE               runtime config file (JUNCTION_CONFIG otherwise)\n"
    "  --data-dir DIR              the store's directory (overrides data_dir)\n";

static const char evidence_usage[] =
    "usage: junction evidence export [--integration ID] [--job ID] [--since WHEN]\n"
    "  prints stored evidence items as JSON lines on stdout, oldest first\n"
    "  --since WHEN   stored at or after WHEN: a UTC time (2026-03-10,\n"
    "                 2026-03-10T10:00:00Z) or a duration ago (30m, 24h, 7d)\n"
    "  --config FILE, --data-dir DIR as for the other commands\n";

typedef struct {
    const char *config_file, *data_dir, *integration, *status, *provider, *since, *job, *format;
    const char *id;
    int64_t limit, changes;
    int dead_letter;
    int json;
} args_t;

static const jn_cli_opt_t jobs_opts[] = {JN_CLI_STR(args_t, "config", config_file),
                                         JN_CLI_STR(args_t, "config-file", config_file),
                                         JN_CLI_STR(args_t, "data-dir", data_dir),
                                         JN_CLI_STR(args_t, "integration", integration),
                                         JN_CLI_STR(args_t, "status", status),
                                         JN_CLI_INT(args_t, "limit", limit, 0, 100000000),
                                         JN_CLI_STR(args_t, "provider", provider),
                                         JN_CLI_FLAG(args_t, "dead-letter", dead_letter),
                                         JN_CLI_INT(args_t, "changes", changes, 0, 100000000),
                                         JN_CLI_STR(args_t, "since", since),
                                         JN_CLI_STR(args_t, "job", job),
                                         JN_CLI_STR(args_t, "format", format),
                                         JN_CLI_HELP,
                                         JN_CLI_END};

static int parse_args(int argc, char **argv, args_t *a)
{
    a->limit = 50;
    a->changes = 20;
    return jn_cli_parse_show_args(jobs_opts, argc, argv, a, &a->id, &a->format, &a->json);
}

/* ---- output --------------------------------------------------------------- */

static void print_text(const char *text)
{
    char *clean = jn_redactor_scrub(jn_redactor_global(), text, strlen(text));

    fputs(clean ? clean : text, stdout);
    fflush(stdout);
    free(clean);
}

static int buf_str(jn_buf_t *b, const char *s)
{
    if (s == NULL)
        return jn_buf_puts(b, "null");
    return jn_json_append_string(b, s, strlen(s));
}

static void buf_time(jn_buf_t *b, int64_t ms)
{
    char t[32];

    buf_str(b, ms > 0 ? jn_format_rfc3339(ms, t, sizeof(t)) : NULL);
}

static void buf_num(jn_buf_t *b, int64_t n)
{
    char t[32];

    snprintf(t, sizeof(t), "%" PRId64, n);
    jn_buf_puts(b, t);
}

static int64_t duration_ms(const jn_job_record_t *r)
{
    if (r->started_ms <= 0)
        return -1;
    return (r->finished_ms > 0 ? r->finished_ms : jn_now_ms()) - r->started_ms;
}

static void job_json(jn_buf_t *b, const jn_job_record_t *r)
{
    jn_buf_puts(b, "{\"id\":");
    buf_str(b, r->id);
    jn_buf_puts(b, ",\"organization_id\":");
    buf_str(b, r->organization_id);
    jn_buf_puts(b, ",\"integration_id\":");
    buf_str(b, r->integration_id);
    jn_buf_puts(b, ",\"provider\":");
    buf_str(b, r->provider_type);
    jn_buf_puts(b, ",\"connector_version\":");
    buf_str(b, r->connector_version);
    jn_buf_puts(b, ",\"kind\":");
    buf_str(b, r->kind);
    jn_buf_puts(b, ",\"status\":");
    buf_str(b, jn_job_status_name(r->status));
    jn_buf_puts(b, ",\"priority\":");
    buf_str(b, r->priority);
    jn_buf_puts(b, ",\"trigger\":");
    buf_str(b, r->trigger);
    jn_buf_puts(b, ",\"slot_id\":");
    buf_str(b, r->slot_id);
    jn_buf_puts(b, ",\"attempts\":");
    buf_num(b, r->attempts);
    jn_buf_puts(b, ",\"max_attempts\":");
    buf_num(b, r->max_attempts);
    jn_buf_puts(b, ",\"created_at\":");
    buf_time(b, r->created_ms);
    jn_buf_puts(b, ",\"started_at\":");
    buf_time(b, r->started_ms);
    jn_buf_puts(b, ",\"finished_at\":");
    buf_time(b, r->finished_ms);
    jn_buf_puts(b, ",\"retry_at\":");
    buf_time(b, r->status == JN_JOB_QUEUED ? r->retry_at_ms : 0);
    jn_buf_puts(b, ",\"duration_ms\":");
    if (duration_ms(r) >= 0)
        buf_num(b, duration_ms(r));
    else
        jn_buf_puts(b, "null");
    jn_buf_puts(b, ",\"items\":");
    buf_num(b, r->items);
    jn_buf_puts(b, ",\"pages\":");
    buf_num(b, r->pages);
    jn_buf_puts(b, ",\"error\":");
    buf_str(b, r->error);
    jn_buf_puts(b, ",\"changes\":");
    if (r->added < 0) {
        jn_buf_puts(b, "null");
    } else {
        jn_buf_puts(b, "{\"added\":");
        buf_num(b, r->added);
        jn_buf_puts(b, ",\"changed\":");
        buf_num(b, r->changed);
        jn_buf_puts(b, ",\"removed\":");
        buf_num(b, r->removed);
        jn_buf_puts(b, ",\"baseline_job_id\":");
        buf_str(b, r->baseline_job_id);
        jn_buf_puts(b, "}");
    }
}

static const char list_header[] = "JOB ID                           INTEGRATION              "
                                  "STATUS    ATTEMPTS ITEMS  PAGES  TRIGGER  CREATED          "
                                  "        DURATION ERROR\n";

static void job_row(jn_buf_t *b, const jn_job_record_t *r)
{
    char line[1024], t[32], att[24], dur[24], err[64];
    int64_t d = duration_ms(r);

    snprintf(att, sizeof(att), "%d/%d", r->attempts, r->max_attempts);
    if (d >= 0)
        snprintf(dur, sizeof(dur), "%.1fs", (double)d / 1000.0);
    else
        snprintf(dur, sizeof(dur), "-");
    /* the first line of the error, shortened: `jobs show` has all of it */
    snprintf(err, sizeof(err), "%.60s", r->error ? r->error : "");
    err[strcspn(err, "\n")] = '\0';
    snprintf(line, sizeof(line),
             "%-32s %-24s %-9s %-8s %-6" PRId64 " %-6" PRId64 " %-8s %-24s %-8s %s\n", r->id,
             r->integration_id ? r->integration_id : "-", jn_job_status_name(r->status), att,
             r->items, r->pages, r->trigger ? r->trigger : "-",
             r->created_ms > 0 ? jn_format_rfc3339(r->created_ms, t, sizeof(t)) : "-", dur, err);
    jn_buf_puts(b, line);
}

/* ---- jobs list ------------------------------------------------------------ */

typedef struct {
    jn_buf_t out;
    int json;
    int64_t n;
} list_state_t;

static int list_cb(void *ud, const jn_job_record_t *r)
{
    list_state_t *st = ud;

    if (st->json) {
        job_json(&st->out, r);
        jn_buf_puts(&st->out, "}\n");
    } else {
        job_row(&st->out, r);
    }
    st->n++;
    if (st->out.len > 65536) {
        print_text(st->out.data);
        jn_buf_free(&st->out);
    }
    return 0;
}

static int dead_cb(void *ud, const jn_queue_job_t *j)
{
    list_state_t *st = ud;
    char line[1024], t[32];

    if (st->json) {
        jn_buf_puts(&st->out, "{\"id\":");
        buf_str(&st->out, j->id);
        jn_buf_puts(&st->out, ",\"provider\":");
        buf_str(&st->out, j->provider);
        jn_buf_puts(&st->out, ",\"organization_id\":");
        buf_str(&st->out, j->organization_id);
        jn_buf_puts(&st->out, ",\"priority\":");
        buf_str(&st->out, jn_priority_name(j->priority));
        jn_buf_puts(&st->out, ",\"attempts\":");
        buf_num(&st->out, j->attempts);
        jn_buf_puts(&st->out, ",\"enqueued_at\":");
        buf_time(&st->out, j->enqueued_ms);
        jn_buf_puts(&st->out, ",\"dead_at\":");
        buf_time(&st->out, j->finished_ms);
        jn_buf_puts(&st->out, ",\"last_error\":");
        buf_str(&st->out, j->last_error);
        jn_buf_puts(&st->out, ",\"payload\":");
        jn_buf_puts(&st->out, j->payload_json ? j->payload_json : "null");
        jn_buf_puts(&st->out, "}\n");
    } else {
        snprintf(line, sizeof(line), "%-32s %-12s %-16s %-8d %-24s %.80s\n", j->id, j->provider,
                 j->organization_id, j->attempts, jn_format_rfc3339(j->finished_ms, t, sizeof(t)),
                 j->last_error ? j->last_error : "");
        jn_buf_puts(&st->out, line);
    }
    st->n++;
    return 0;
}

static int cmd_list(const args_t *a)
{
    jn_job_filter_t f = {a->integration, a->status, a->limit};
    list_state_t st = {{0}, a->json, 0};
    jn_cli_env_t e;
    int rc;

    if (a->status && jn_job_status_parse(a->status) < 0) {
        fprintf(stderr,
                "junction: unknown status '%s' (queued, running, succeeded, partial, failed,"
                " cancelled)\n",
                a->status);
        return 2;
    }
    if ((rc = jn_cli_env_open(&e, a->config_file, a->data_dir)) != 0)
        return rc;
    if (a->dead_letter) {
        if (!a->json)
            jn_buf_puts(&st.out, "JOB ID                           PROVIDER     ORG              "
                                 "ATTEMPTS DEAD AT                  LAST ERROR\n");
        rc = jn_queue_each(e.queue, JN_QSTATE_DEAD, a->provider, dead_cb, &st);
        if (rc != 0)
            fprintf(stderr, "junction: %s\n", jn_queue_errmsg(e.queue));
    } else {
        if (!a->json)
            jn_buf_puts(&st.out, list_header);
        rc = jn_store_job_each(e.store, &f, list_cb, &st);
        if (rc != 0)
            fprintf(stderr, "junction: cannot list jobs: %s\n", jn_store_errmsg(e.store));
    }
    if (rc == 0 && st.out.data)
        print_text(st.out.data);
    if (rc == 0 && st.n == 0)
        fprintf(stderr, "junction: no jobs\n");
    jn_buf_free(&st.out);
    jn_cli_env_close(&e);
    return rc == 0 ? 0 : 1;
}

/* ---- jobs show ------------------------------------------------------------ */

typedef struct {
    jn_buf_t *b;
    int json;
    int n;
} changes_state_t;

static int change_cb(void *ud, const jn_job_change_t *c)
{
    changes_state_t *st = ud;
    char line[768];

    if (st->json) {
        jn_buf_puts(st->b, st->n++ ? ",{\"resource_type\":" : "{\"resource_type\":");
        buf_str(st->b, c->resource_type);
        jn_buf_puts(st->b, ",\"resource_id\":");
        buf_str(st->b, c->resource_id);
        jn_buf_puts(st->b, "}");
    } else {
        snprintf(line, sizeof(line), "  %-8s %s %s\n", c->change, c->resource_type, c->resource_id);
        jn_buf_puts(st->b, line);
        st->n++;
    }
    return 0;
}

static void show_table(jn_buf_t *b, const jn_job_record_t *r, const jn_queue_job_t *q)
{
    char line[1400], t[32];
    int64_t d = duration_ms(r);

#define ROW(k, v)                                                                                  \
    do {                                                                                           \
        snprintf(line, sizeof(line), "%-14s %s\n", k, v);                                          \
        jn_buf_puts(b, line);                                                                      \
    } while (0)
#define TIME(k, ms) ROW(k, (ms) > 0 ? jn_format_rfc3339(ms, t, sizeof(t)) : "-")
    ROW("id", r->id);
    ROW("integration", r->integration_id ? r->integration_id : "-");
    ROW("organization", r->organization_id ? r->organization_id : "-");
    ROW("provider", r->provider_type ? r->provider_type : "-");
    ROW("connector", r->connector_version ? r->connector_version : "-");
    ROW("status", jn_job_status_name(r->status));
    if (q != NULL && q->id != NULL && q->cancel_requested && q->state == JN_QSTATE_RUNNING)
        ROW("cancel", "requested");
    ROW("priority", r->priority ? r->priority : "-");
    ROW("trigger", r->trigger ? r->trigger : "-");
    ROW("slot", r->slot_id ? r->slot_id : "-");
    snprintf(t, sizeof(t), "%d of %d", r->attempts, r->max_attempts);
    ROW("attempts", t);
    TIME("created", r->created_ms);
    TIME("started", r->started_ms);
    TIME("finished", r->finished_ms);
    if (r->status == JN_JOB_QUEUED && r->retry_at_ms > 0)
        TIME("retry_at", r->retry_at_ms);
    if (d >= 0) {
        snprintf(t, sizeof(t), "%.3f s", (double)d / 1000.0);
        ROW("duration", t);
    }
    snprintf(t, sizeof(t), "%" PRId64, r->items);
    ROW("items", t);
    snprintf(t, sizeof(t), "%" PRId64, r->pages);
    ROW("pages", t);
    ROW("error", r->error ? r->error : "-");
    if (r->added >= 0) {
        snprintf(line, sizeof(line),
                 "%-14s %" PRId64 " added, %" PRId64 " changed, %" PRId64 " removed (%s%s)\n",
                 "changes", r->added, r->changed, r->removed,
                 r->baseline_job_id ? "since job " : "first run",
                 r->baseline_job_id ? r->baseline_job_id : "");
        jn_buf_puts(b, line);
    } else {
        ROW("changes", "-");
    }
#undef TIME
#undef ROW
}

static int cmd_show(const args_t *a)
{
    static const char *const kinds[] = {"added", "changed", "removed"};
    jn_cli_env_t e;
    jn_job_record_t r;
    jn_queue_job_t q = {0};
    jn_buf_t out = {0};
    char *strings = NULL;
    int rc, i;

    if (a->id == NULL) {
        fprintf(stderr, "junction: jobs show: the job ID is required\n");
        return 2;
    }
    if ((rc = jn_cli_env_open(&e, a->config_file, a->data_dir)) != 0)
        return rc;
    rc = jn_store_job_get(e.store, a->id, &r, &strings);
    if (rc != 0) {
        if (rc > 0)
            fprintf(stderr, "junction: no job '%s'\n", a->id);
        else
            fprintf(stderr, "junction: %s\n", jn_store_errmsg(e.store));
        jn_cli_env_close(&e);
        return rc > 0 ? 2 : 1;
    }
    if (jn_queue_get(e.queue, a->id, &q) != 0)
        jn_queue_job_clear(&q);
    if (a->json) {
        job_json(&out, &r);
        jn_buf_puts(&out, ",\"cancel_requested\":");
        jn_buf_puts(&out,
                    q.id && q.cancel_requested && q.state == JN_QSTATE_RUNNING ? "true" : "false");
        jn_buf_puts(&out, ",\"changed_resources\":{");
        for (i = 0; i < 3; i++) {
            changes_state_t st = {&out, 1, 0};
            jn_buf_puts(&out, i ? ",\"" : "\"");
            jn_buf_puts(&out, kinds[i]);
            jn_buf_puts(&out, "\":[");
            jn_store_job_changes_each(e.store, a->id, kinds[i], a->changes, change_cb, &st);
            jn_buf_puts(&out, "]");
        }
        jn_buf_puts(&out, "}}\n");
    } else {
        show_table(&out, &r, &q);
        for (i = 0; i < 3 && r.added >= 0 && a->changes > 0; i++) {
            changes_state_t st = {&out, 0, 0};
            jn_store_job_changes_each(e.store, a->id, kinds[i], a->changes, change_cb, &st);
            if (st.n == a->changes)
                jn_buf_puts(&out, "  ... (--changes N or --format json for more)\n");
        }
    }
    print_text(out.data);
    jn_buf_free(&out);
    jn_queue_job_clear(&q);
    free(strings);
    jn_cli_env_close(&e);
    return 0;
}

/* ---- jobs cancel ---------------------------------------------------------- */

/* Cancels a queued job and its record in one transaction. */
static int cancel_locked(jn_cli_env_t *e, const char *id, jn_queue_state_t *before,
                         jn_job_record_t *r, char **strings)
{
    int rc = jn_queue_cancel(e->queue, id, before);

    if (rc != 0)
        return rc;
    rc = jn_store_job_get(e->store, id, r, strings);
    if (rc < 0)
        return -1;
    if (rc == 0 && *before == JN_QSTATE_QUEUED) {
        r->status = JN_JOB_CANCELLED;
        r->finished_ms = jn_now_ms();
        r->error = "cancelled by request";
        if (jn_store_job_put(e->store, r) != 0)
            return -1;
    }
    return 0;
}

static int cmd_cancel(const args_t *a)
{
    jn_cli_env_t e;
    jn_queue_state_t before = JN_QSTATE_QUEUED;
    jn_job_record_t r = {0};
    jn_buf_t out = {0};
    char *strings = NULL, line[256];
    const char *outcome = NULL;
    int rc;

    if (a->id == NULL) {
        fprintf(stderr, "junction: jobs cancel: the job ID is required\n");
        return 2;
    }
    if ((rc = jn_cli_env_open(&e, a->config_file, a->data_dir)) != 0)
        return rc;
    if (jn_store_begin(e.store) != 0) {
        fprintf(stderr, "junction: %s\n", jn_store_errmsg(e.store));
        jn_cli_env_close(&e);
        return 1;
    }
    rc = cancel_locked(&e, a->id, &before, &r, &strings);
    if (rc != 0 || jn_store_commit(e.store) != 0) {
        jn_store_rollback(e.store);
        if (rc > 0)
            fprintf(stderr, "junction: no job '%s' in the queue\n", a->id);
        else
            fprintf(stderr, "junction: cannot cancel job '%s': %s\n", a->id,
                    jn_queue_errmsg(e.queue)[0] ? jn_queue_errmsg(e.queue)
                                                : jn_store_errmsg(e.store));
        free(strings);
        jn_cli_env_close(&e);
        return rc > 0 ? 2 : 1;
    }
    switch (before) {
    case JN_QSTATE_QUEUED:
        outcome = "cancelled";
        snprintf(line, sizeof(line), "job %s cancelled\n", a->id);
        break;
    case JN_QSTATE_RUNNING:
        outcome = "cancel_requested";
        snprintf(line, sizeof(line),
                 "job %s is running: cancellation requested; its worker stops it at its next"
                 " yield\n",
                 a->id);
        break;
    default:
        fprintf(stderr, "junction: job %s has already finished (%s)\n", a->id,
                jn_queue_state_name(before));
        rc = 1;
        break;
    }
    if (outcome != NULL) {
        if (a->json) {
            jn_buf_puts(&out, "{\"id\":");
            buf_str(&out, a->id);
            jn_buf_puts(&out, ",\"outcome\":");
            buf_str(&out, outcome);
            jn_buf_puts(&out, "}\n");
            print_text(out.data);
        } else {
            print_text(line);
        }
    }
    jn_buf_free(&out);
    free(strings);
    jn_cli_env_close(&e);
    return rc;
}

/* ---- jobs stats ----------------------------------------------------------- */

static int stats_cb(void *ud, const jn_queue_stat_t *s)
{
    list_state_t *st = ud;
    char line[512];

    if (st->json) {
        jn_buf_puts(&st->out, "{\"provider\":");
        buf_str(&st->out, s->provider);
        jn_buf_puts(&st->out, ",\"priority\":");
        buf_str(&st->out, jn_priority_name(s->priority));
        jn_buf_puts(&st->out, ",\"queued\":");
        buf_num(&st->out, s->queued);
        jn_buf_puts(&st->out, ",\"ready\":");
        buf_num(&st->out, s->ready);
        jn_buf_puts(&st->out, ",\"running\":");
        buf_num(&st->out, s->running);
        jn_buf_puts(&st->out, ",\"dead\":");
        buf_num(&st->out, s->dead);
        jn_buf_puts(&st->out, ",\"oldest_age_ms\":");
        buf_num(&st->out, s->oldest_age_ms);
        jn_buf_puts(&st->out, "}\n");
    } else {
        snprintf(line, sizeof(line),
                 "%-16s %-8s %8" PRId64 " %8" PRId64 " %8" PRId64 " %8" PRId64 " %12.1f\n",
                 s->provider, jn_priority_name(s->priority), s->queued, s->ready, s->running,
                 s->dead, (double)s->oldest_age_ms / 1000.0);
        jn_buf_puts(&st->out, line);
    }
    st->n++;
    return 0;
}

static int cmd_stats(const args_t *a)
{
    list_state_t st = {{0}, a->json, 0};
    jn_cli_env_t e;
    int rc;

    if ((rc = jn_cli_env_open(&e, a->config_file, a->data_dir)) != 0)
        return rc;
    if (!a->json)
        jn_buf_puts(&st.out, "PROVIDER         PRIORITY   QUEUED    READY  RUNNING     DEAD"
                             "   OLDEST (s)\n");
    rc = jn_queue_stats(e.queue, stats_cb, &st);
    if (rc != 0)
        fprintf(stderr, "junction: %s\n", jn_queue_errmsg(e.queue));
    else if (st.out.data)
        print_text(st.out.data);
    jn_buf_free(&st.out);
    jn_cli_env_close(&e);
    return rc == 0 ? 0 : 1;
}

int jn_cli_jobs(int argc, char **argv)
{
    args_t a = {0};
    const char *cmd = argc >= 2 ? argv[1] : NULL;
    int rc;

    if (cmd == NULL || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
        strcmp(cmd, "help") == 0) {
        fputs(jobs_usage, cmd ? stdout : stderr);
        return cmd ? 0 : 2;
    }
    rc = parse_args(argc - 1, argv + 1, &a);
    if (rc != 0) {
        if (rc == -2)
            return 2;
        fputs(jobs_usage, rc > 0 ? stdout : stderr);
        return rc > 0 ? 0 : 2;
    }
    if (strcmp(cmd, "list") == 0)
        return cmd_list(&a);
    if (strcmp(cmd, "show") == 0)
        return cmd_show(&a);
    if (strcmp(cmd, "cancel") == 0)
        return cmd_cancel(&a);
    if (strcmp(cmd, "stats") == 0)
        return cmd_stats(&a);
    fprintf(stderr, "junction: unknown jobs command '%s'\n\n%s", cmd, jobs_usage);
    return 2;
}

/* ---- evidence export ------------------------------------------------------ */

/* "2026-03-10", "2026-03-10T10:00", "2026-03-10T10:00:00[.123]Z" (UTC), or a
 * duration ago. 0, or -1 when it is neither. */
static int parse_since(const char *text, int64_t *ms)
{
    struct tm tm;
    int64_t ago;
    int y, mo, d, h = 0, mi = 0, n = 0;
    double sec = 0;
    const char *rest;
    char why[128];

    if (jn_duration_parse(text, &ago, why, sizeof(why)) == 0) {
        *ms = jn_now_ms() - ago;
        return 0;
    }
    if (sscanf(text, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
        return -1;
    rest = text + n;
    if (*rest == 'T' || *rest == ' ') {
        if (sscanf(rest + 1, "%2d:%2d%n", &h, &mi, &n) != 2 || n != 5)
            return -1;
        rest += 1 + n;
        if (*rest == ':') {
            char *end;
            sec = strtod(rest + 1, &end);
            if (end == rest + 1 || sec < 0 || sec >= 61)
                return -1;
            rest = end;
        }
        if (*rest == 'Z')
            rest++;
    }
    if (*rest != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59)
        return -1;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    *ms = (int64_t)timegm(&tm) * 1000 + (int64_t)(sec * 1000);
    return 0;
}

typedef struct {
    int64_t n;
    int failed;
} export_state_t;

static int export_cb(void *ud, const jn_evidence_t *item)
{
    export_state_t *st = ud;
    jn_buf_t b = {0};

    if (jn_evidence_append_json(&b, item) != 0 || jn_buf_append(&b, "\n", 1) != 0 ||
        fwrite(b.data, 1, b.len, stdout) != b.len) {
        st->failed = 1;
        jn_buf_free(&b);
        return 1;
    }
    jn_buf_free(&b);
    st->n++;
    return 0;
}

int jn_cli_evidence(int argc, char **argv)
{
    args_t a = {0};
    jn_evidence_filter_t f = {0};
    export_state_t st = {0, 0};
    const char *cmd = argc >= 2 ? argv[1] : NULL;
    jn_cli_env_t e;
    int rc;

    if (cmd == NULL || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
        strcmp(cmd, "help") == 0) {
        fputs(evidence_usage, cmd ? stdout : stderr);
        return cmd ? 0 : 2;
    }
    if (strcmp(cmd, "export") != 0) {
        fprintf(stderr, "junction: unknown evidence command '%s'\n\n%s", cmd, evidence_usage);
        return 2;
    }
    rc = parse_args(argc - 1, argv + 1, &a);
    if (rc != 0 || a.id != NULL) {
        if (rc == -2)
            return 2;
        fputs(evidence_usage, rc > 0 ? stdout : stderr);
        return rc > 0 ? 0 : 2;
    }
    if (a.since != NULL && parse_since(a.since, &f.stored_since_ms) != 0) {
        fprintf(stderr,
                "junction: --since must be a UTC time (2026-03-10, 2026-03-10T10:00:00Z) or a"
                " duration ago (30m, 24h, 7d), got '%s'\n",
                a.since);
        return 2;
    }
    if (a.since != NULL && f.stored_since_ms <= 0)
        f.stored_since_ms = 1;
    f.integration_id = a.integration;
    f.run_id = a.job;
    if ((rc = jn_cli_env_open(&e, a.config_file, a.data_dir)) != 0)
        return rc;
    rc = jn_store_evidence_export(e.store, &f, export_cb, &st);
    fflush(stdout);
    if (rc != 0)
        fprintf(stderr, "junction: cannot export evidence: %s\n", jn_store_errmsg(e.store));
    else if (st.failed || ferror(stdout))
        fprintf(stderr, "junction: cannot write evidence to stdout\n");
    jn_cli_env_close(&e);
    return rc != 0 || st.failed ? 1 : 0;
}
