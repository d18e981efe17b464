/* junction integrations: the integrations kept in the store, and what the
 * integrations, jobs and evidence commands share (opening the store and the
 * queue, enqueueing a run, validating ids and schedules).
 *
 * An integration holds no secret: its credential is a vault credential id or
 * the name of an environment variable, and its config is refused when a
 * member name looks like a credential. Output is a table (default) or JSON
 * (--format json: one object per line), run through the redactor.
 */
#include <ctype.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "connector.h"
#include "json_canon.h"
#include "junction/clock.h"
#include "junction/error.h"
#include "junction/json.h"
#include "junction/log.h"
#include "junction/redact.h"

static const char integrations_usage[] =
    "usage: junction integrations <command> [options]\n"
    "  add ID --org ORG --provider PROVIDER [options]   store a new integration\n"
    "      --credential ID           a vault credential of ORG (junction creds put)\n"
    "      --token-env VAR           or: an environment variable holding a token\n"
    "      --auth-scheme WORD        with --token-env: Bearer (default), token, SSWS, ...\n"
    "      --config JSON             the connector's non-secret config (default {})\n"
    "      --schedule S              an interval (15m, 1h, 1d, 1h30m) or a cron expression\n"
    "                                ('*/15 * * * *', '@daily'; UTC); default run_interval_s\n"
    "      --jitter D                spread each run over D after its time (e.g. 5m)\n"
    "      --priority P              high, normal (default) or low\n"
    "      --connector-version V     run only with this version of the connector\n"
    "      --disabled                store it disabled\n"
    "  list [--org ORG] [--provider P]                  the integrations\n"
    "  show ID                                          one integration, its next and last run\n"
    "  disable ID | enable ID                           stop or resume its schedule\n"
    "  rm ID                                            delete it (and its checkpoint)\n"
    "  sync ID [--priority P]                           enqueue a run now (default high)\n"
    "common options:\n"
    "  --format table|json           output (default table; json: one object per line)\n"
    "  --config-file FILE            runtime config file; for every command but add,\n"
    "                                --config FILE means the same\n"
    "  --data-dir DIR                the store's directory (overrides data_dir)\n";

/* ---- shared with run and jobs ----------------------------------------------- */

int jn_cli_env_open(jn_cli_env_t *e, const char *config_file, const char *data_dir_override)
{
    const char *dir;

    memset(e, 0, sizeof(*e));
    if ((e->cfg = jn_cli_load_config(config_file)) == NULL)
        return 2;
    dir = data_dir_override ? data_dir_override : jn_config_str(e->cfg, "data_dir");
    if ((e->store = jn_cli_open_store(dir)) == NULL || jn_cli_cluster_store(e->store, e->cfg) < 0 ||
        (e->queue = jn_cli_open_queue(e->store, e->cfg, "cli")) == NULL) {
        jn_cli_env_close(e);
        return 1;
    }
    return 0;
}

void jn_cli_env_close(jn_cli_env_t *e)
{
    if (e->queue)
        jn_queue_destroy(e->queue);
    if (e->store)
        jn_store_close(e->store);
    if (e->cfg)
        jn_config_destroy(e->cfg);
    memset(e, 0, sizeof(*e));
}

/* Retries double from queue_retry_base_s up to this. */
#define RETRY_MAX_MS (3600 * 1000LL)

jn_queue_t *jn_cli_open_queue(jn_store_t *store, const jn_config_t *cfg, const char *consumer)
{
    jn_queue_opts_t o = {0};
    char err[512];
    jn_queue_t *q;

    o.consumer = consumer;
    o.visibility_timeout_ms = jn_config_int(cfg, "queue_visibility_timeout_s") * 1000;
    o.max_attempts = (int)jn_config_int(cfg, "queue_max_attempts");
    o.retry_base_ms = jn_config_int(cfg, "queue_retry_base_s") * 1000;
    o.retry_max_ms = RETRY_MAX_MS;
    if (jn_cli_cluster_mode(cfg))
        return jn_cli_open_redis_queue(cfg, &o);
    q = jn_queue_open_store(store, &o, err, sizeof(err));
    if (q == NULL)
        fprintf(stderr, "junction: %s\n", err);
    return q;
}

static int buf_str(jn_buf_t *b, const char *s)
{
    if (s == NULL)
        return jn_buf_puts(b, "null");
    return jn_json_append_string(b, s, strlen(s));
}

/* 1 when the integration's stream runs (its job id in id): a stream is the
 * integration's run for as long as it lasts, so a run asked for meanwhile is
 * absorbed by it rather than queued behind a job that does not end. The
 * queue knows which job of the integration's group runs, its record whether
 * that job streams. 0 when not, -1 (err) when either cannot be read. */
static int stream_absorbs(jn_store_t *store, jn_queue_t *q, const char *integration_id,
                          char id[JN_QUEUE_ID_LEN], char *err, size_t errlen)
{
    jn_job_record_t rec;
    char *strings = NULL;
    int rc = jn_queue_group_running(q, integration_id, id), stream;

    if (rc != 0) {
        id[0] = '\0';
        return rc < 0 ? jn_errorf(err, errlen, "cannot read the queue: %s", jn_queue_errmsg(q)) : 0;
    }
    rc = jn_store_job_get(store, id, &rec, &strings);
    if (rc < 0) {
        jn_errorf(err, errlen, "cannot read job %s: %s", id, jn_store_errmsg(store));
        id[0] = '\0';
        return -1;
    }
    stream = rc == 0 && rec.kind != NULL && strcmp(rec.kind, "stream") == 0;
    free(strings);
    if (!stream)
        id[0] = '\0';
    return stream;
}

int jn_cli_enqueue_run(jn_store_t *store, jn_queue_t *q, const jn_integration_t *it,
                       const char *trigger, int64_t slot_ms, jn_priority_t priority,
                       int max_attempts, jn_queue_enqueued_t *out, char *err, size_t errlen)
{
    jn_queue_enqueue_t e = {0};
    jn_job_record_t r = {0};
    jn_buf_t payload = {0};
    char slot_id[256];
    int own = !jn_store_in_transaction(store), rc = -1;

    memset(out, 0, sizeof(*out));
    if (slot_ms > 0 && jn_schedule_slot_id(it->id, slot_ms, slot_id, sizeof(slot_id)) != 0)
        return jn_errorf(err, errlen, "integration '%s': its id is too long for a slot id", it->id);
    rc = stream_absorbs(store, q, it->id, out->id, err, errlen);
    if (rc != 0) {
        if (rc < 0)
            return -1;
        out->coalesced = JN_CLI_STREAM_ABSORBED;
        if (slot_ms > 0 && jn_store_integration_mark_slot(store, it->id, slot_ms) < 0)
            return jn_errorf(err, errlen, "%s", jn_store_errmsg(store));
        return 0;
    }
    rc = -1;
    if (jn_buf_puts(&payload, "{\"integration_id\":") || buf_str(&payload, it->id) ||
        jn_buf_puts(&payload, ",\"trigger\":") || buf_str(&payload, trigger) ||
        jn_buf_puts(&payload, ",\"slot_id\":") || buf_str(&payload, slot_ms > 0 ? slot_id : NULL) ||
        jn_buf_puts(&payload, "}")) {
        jn_buf_free(&payload);
        return jn_errorf(err, errlen, "out of memory");
    }
    e.idempotency_key = slot_ms > 0 ? slot_id : NULL;
    e.group_key = it->id;
    e.provider = it->provider;
    e.organization_id = it->organization_id;
    e.priority = priority;
    e.payload_json = payload.data;
    e.max_attempts = max_attempts;
    e.flags = slot_ms > 0 ? JN_QUEUE_COALESCE : 0;
    if (own && jn_store_begin(store) != 0) {
        jn_errorf(err, errlen, "%s", jn_store_errmsg(store));
        goto done;
    }
    if (jn_queue_enqueue(q, &e, out) != 0) {
        jn_errorf(err, errlen, "cannot enqueue a run of '%s': %s", it->id, jn_queue_errmsg(q));
        goto rollback;
    }
    if (out->created) {
        r.id = out->id;
        r.organization_id = it->organization_id;
        r.integration_id = it->id;
        r.provider_type = it->provider;
        r.kind = "collect";
        r.status = JN_JOB_QUEUED;
        r.created_ms = jn_now_ms();
        r.max_attempts = max_attempts > 0 ? max_attempts : q->opts.max_attempts;
        r.priority = jn_priority_name(priority);
        r.trigger = trigger;
        r.slot_id = slot_ms > 0 ? slot_id : NULL;
        r.added = r.changed = r.removed = -1;
        if (jn_store_job_put(store, &r) != 0) {
            jn_errorf(err, errlen, "cannot record job %s: %s", out->id, jn_store_errmsg(store));
            goto rollback;
        }
    }
    if (slot_ms > 0 && jn_store_integration_mark_slot(store, it->id, slot_ms) < 0) {
        jn_errorf(err, errlen, "%s", jn_store_errmsg(store));
        goto rollback;
    }
    if (own && jn_store_commit(store) != 0) {
        jn_errorf(err, errlen, "%s", jn_store_errmsg(store));
        goto rollback;
    }
    rc = 0;
    goto done;
rollback:
    if (own)
        jn_store_rollback(store);
done:
    jn_buf_free(&payload);
    return rc;
}

int jn_cli_check_id(const char *what, const char *id, char *err, size_t errlen)
{
    const char *p;

    if (id == NULL || *id == '\0')
        return jn_errorf(err, errlen, "%s is empty", what);
    if (strlen(id) > 128)
        return jn_errorf(err, errlen, "%s '%.40s...' is longer than 128 characters", what, id);
    for (p = id; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._:-", *p))
            return jn_errorf(err, errlen,
                             "%s '%s': character %d ('%c') is not allowed (letters, digits and"
                             " . _ : - only)",
                             what, id, (int)(p - id) + 1, isprint((unsigned char)*p) ? *p : '?');
    return 0;
}

int jn_cli_schedule(const jn_config_t *cfg, const char *schedule, const char *jitter, char *buf,
                    size_t len, int64_t *jitter_ms, char *err, size_t errlen)
{
    jn_schedule_t s;
    char def[32], why[256];

    *jitter_ms = 0;
    if (schedule == NULL) {
        snprintf(def, sizeof(def), "%llds", jn_config_int(cfg, "run_interval_s"));
        schedule = def;
    }
    if (jn_schedule_canonical(schedule, buf, len, err, errlen) != 0 ||
        jn_schedule_parse(buf, &s, err, errlen) != 0)
        return -1;
    if (jitter != NULL) {
        if (jn_duration_parse(jitter, jitter_ms, why, sizeof(why)) != 0)
            return jn_errorf(err, errlen, "invalid jitter: %s", why);
        if (jn_schedule_set_jitter(&s, *jitter_ms, why, sizeof(why)) != 0)
            return jn_errorf(err, errlen, "invalid jitter '%s': %s", jitter, why);
    }
    return 0;
}

int jn_cli_integration_schedule(const jn_integration_t *it, jn_schedule_t *out, char *err,
                                size_t errlen)
{
    if (jn_schedule_parse(it->schedule, out, err, errlen) != 0)
        return -1;
    return jn_schedule_set_jitter(out, it->jitter_ms, err, errlen);
}

/* ---- arguments ------------------------------------------------------------ */

typedef struct {
    const char *config_file, *data_dir, *org, *provider, *credential, *token_env, *auth_scheme,
        *config_json, *schedule, *jitter, *priority, *version, *format;
    const char *id;
    int disabled;
    int json;
} args_t;

/* Both tables but for what --config means: add takes the connector's JSON
 * config, every other command the runtime config file. */
#define INTEGRATIONS_OPTS                                                                          \
    JN_CLI_STR(args_t, "config-file", config_file), JN_CLI_STR(args_t, "data-dir", data_dir),      \
        JN_CLI_STR(args_t, "org", org), JN_CLI_STR(args_t, "provider", provider),                  \
        JN_CLI_STR(args_t, "credential", credential), JN_CLI_STR(args_t, "token-env", token_env),  \
        JN_CLI_STR(args_t, "auth-scheme", auth_scheme), JN_CLI_STR(args_t, "schedule", schedule),  \
        JN_CLI_STR(args_t, "jitter", jitter), JN_CLI_STR(args_t, "priority", priority),            \
        JN_CLI_STR(args_t, "connector-version", version), JN_CLI_STR(args_t, "format", format),    \
        JN_CLI_FLAG(args_t, "disabled", disabled), JN_CLI_HELP, JN_CLI_END

static const jn_cli_opt_t add_opts[] = {JN_CLI_STR(args_t, "config", config_json),
                                        INTEGRATIONS_OPTS};
static const jn_cli_opt_t integrations_opts[] = {JN_CLI_STR(args_t, "config", config_file),
                                                 INTEGRATIONS_OPTS};

static int parse_args(int argc, char **argv, args_t *a, int config_is_json)
{
    return jn_cli_parse_show_args(config_is_json ? add_opts : integrations_opts, argc, argv, a,
                                  &a->id, &a->format, &a->json);
}

static int usage_error(const char *msg)
{
    fprintf(stderr, "junction: %s\n", msg);
    return 2;
}

/* ---- output --------------------------------------------------------------- */

static void print_text(const char *text)
{
    /* belt and braces: nothing printed may hold a known secret */
    char *clean = jn_redactor_scrub(jn_redactor_global(), text, strlen(text));

    fputs(clean ? clean : text, stdout);
    fflush(stdout);
    free(clean);
}

static const char *when(int64_t ms, char *buf, size_t len)
{
    if (ms <= 0)
        return "-";
    return jn_format_rfc3339(ms, buf, len);
}

/* The next regular run: the first slot after the last enqueued one and now. */
static int64_t next_run_ms(const jn_integration_t *it)
{
    jn_schedule_t s;
    int64_t after = jn_now_ms(), slot;

    if (!it->enabled || jn_cli_integration_schedule(it, &s, NULL, 0) != 0)
        return 0;
    if (it->last_slot_ms > after)
        after = it->last_slot_ms;
    slot = jn_schedule_slot_after(&s, it->id, after);
    return slot < 0 ? 0 : jn_schedule_fire_ms(&s, it->id, slot);
}

typedef struct {
    char id[JN_QUEUE_ID_LEN + 8];
    char status[16];
    int64_t finished_ms;
    int found;
} last_job_t;

static int last_job_cb(void *ud, const jn_job_record_t *r)
{
    last_job_t *l = ud;

    snprintf(l->id, sizeof(l->id), "%s", r->id);
    snprintf(l->status, sizeof(l->status), "%s", jn_job_status_name(r->status));
    l->finished_ms = r->finished_ms;
    l->found = 1;
    return 1;
}

static last_job_t last_job(jn_store_t *store, const char *id)
{
    jn_job_filter_t f = {id, NULL, 1};
    last_job_t l = {0};

    jn_store_job_each(store, &f, last_job_cb, &l);
    return l;
}

/* A stored config is inlined as JSON only when it still parses as an object. */
static int append_config(jn_buf_t *b, const char *config_json)
{
    jn_json_t *root = NULL;
    int ok = config_json != NULL &&
             jn_json_parse(config_json, strlen(config_json), NULL, &root, NULL) == 0 &&
             jn_json_is_object(root);

    jn_json_free(root);
    return ok ? jn_buf_puts(b, config_json) : jn_buf_puts(b, "null");
}

static void integration_json(jn_buf_t *b, const jn_integration_t *it, const last_job_t *lj)
{
    char t1[32], t2[32], t3[32], jit[32];
    int64_t next = next_run_ms(it);

    jn_buf_puts(b, "{\"id\":");
    buf_str(b, it->id);
    jn_buf_puts(b, ",\"organization_id\":");
    buf_str(b, it->organization_id);
    jn_buf_puts(b, ",\"provider\":");
    buf_str(b, it->provider);
    jn_buf_puts(b, ",\"credential_id\":");
    buf_str(b, it->credential_id);
    jn_buf_puts(b, ",\"token_env\":");
    buf_str(b, it->token_env);
    jn_buf_puts(b, ",\"auth_scheme\":");
    buf_str(b, it->token_env ? (it->auth_scheme ? it->auth_scheme : "Bearer") : NULL);
    jn_buf_puts(b, ",\"config\":");
    append_config(b, it->config_json);
    jn_buf_puts(b, ",\"schedule\":");
    buf_str(b, it->schedule);
    jn_buf_puts(b, ",\"jitter\":");
    buf_str(b, jn_duration_format(it->jitter_ms, jit, sizeof(jit)));
    jn_buf_puts(b, ",\"priority\":");
    buf_str(b, it->priority);
    jn_buf_puts(b, it->enabled ? ",\"enabled\":true" : ",\"enabled\":false");
    jn_buf_puts(b, ",\"connector_version\":");
    buf_str(b, it->connector_version);
    jn_buf_puts(b, ",\"created_at\":");
    buf_str(b, jn_format_rfc3339(it->created_ms, t1, sizeof(t1)));
    jn_buf_puts(b, ",\"updated_at\":");
    buf_str(b, jn_format_rfc3339(it->updated_ms, t2, sizeof(t2)));
    jn_buf_puts(b, ",\"next_run_at\":");
    buf_str(b, next > 0 ? jn_format_rfc3339(next, t3, sizeof(t3)) : NULL);
    jn_buf_puts(b, ",\"last_job\":");
    if (lj != NULL && lj->found) {
        jn_buf_puts(b, "{\"id\":");
        buf_str(b, lj->id);
        jn_buf_puts(b, ",\"status\":");
        buf_str(b, lj->status);
        jn_buf_puts(b, "}");
    } else {
        jn_buf_puts(b, "null");
    }
    jn_buf_puts(b, "}\n");
}

static void integration_show_table(jn_buf_t *b, const jn_integration_t *it, const last_job_t *lj)
{
    char line[1024], t1[32], t2[32], t3[32], jit[32];
    int64_t next = next_run_ms(it);

#define ROW(k, v)                                                                                  \
    do {                                                                                           \
        snprintf(line, sizeof(line), "%-18s %s\n", k, v);                                          \
        jn_buf_puts(b, line);                                                                      \
    } while (0)
    ROW("id", it->id);
    ROW("organization", it->organization_id);
    ROW("provider", it->provider);
    if (it->credential_id)
        ROW("credential", it->credential_id);
    else if (it->token_env) {
        snprintf(t3, sizeof(t3), "%s", it->auth_scheme ? it->auth_scheme : "Bearer");
        snprintf(line, sizeof(line), "%-18s $%s (scheme %s)\n", "token_env", it->token_env, t3);
        jn_buf_puts(b, line);
    } else
        ROW("credential", "none");
    jn_buf_puts(b, "config             ");
    jn_buf_puts(b, it->config_json ? it->config_json : "{}");
    jn_buf_puts(b, "\n");
    ROW("schedule", it->schedule);
    ROW("jitter", jn_duration_format(it->jitter_ms, jit, sizeof(jit)));
    ROW("priority", it->priority);
    ROW("enabled", it->enabled ? "yes" : "no");
    ROW("connector_version", it->connector_version ? it->connector_version : "any");
    ROW("created", when(it->created_ms, t1, sizeof(t1)));
    ROW("updated", when(it->updated_ms, t2, sizeof(t2)));
    ROW("next_run", next > 0 ? when(next, t3, sizeof(t3)) : "-");
    if (lj != NULL && lj->found) {
        snprintf(line, sizeof(line), "%-18s %s (%s)\n", "last_job", lj->id, lj->status);
        jn_buf_puts(b, line);
    } else {
        ROW("last_job", "-");
    }
#undef ROW
}

static const char list_header[] = "ID                       ORG              PROVIDER     "
                                  "SCHEDULE         PRIORITY ENABLED NEXT RUN                 "
                                  "LAST\n";

static void integration_row(jn_buf_t *b, const jn_integration_t *it, const last_job_t *lj)
{
    char line[1024], t[32];
    int64_t next = next_run_ms(it);

    snprintf(line, sizeof(line), "%-24s %-16s %-12s %-16s %-8s %-7s %-24s %s\n", it->id,
             it->organization_id, it->provider, it->schedule, it->priority,
             it->enabled ? "yes" : "no", next > 0 ? when(next, t, sizeof(t)) : "-",
             lj->found ? lj->status : "-");
    jn_buf_puts(b, line);
}

/* ---- validation --------------------------------------------------------------- */

/* Member names that suggest a secret in what is stored in clear. */
static const char *const secret_names[] = {"password",      "passwd",  "secret",      "token",
                                           "apikey",        "api_key", "private_key", "credential",
                                           "authorization", NULL};

static int check_config(const char *json, char *err, size_t errlen)
{
    jn_json_error_t je;
    jn_json_t *root = NULL;
    const jn_json_t *m;
    char lower[128];
    size_t i, len;
    int rc = 0;

    if (jn_json_parse(json, strlen(json), NULL, &root, &je) != 0)
        return jn_errorf(err, errlen, "--config is not valid JSON: %s", je.message);
    if (!jn_json_is_object(root)) {
        rc = jn_errorf(err, errlen, "--config must be a JSON object, got %s",
                       jn_json_type_name(root));
        goto done;
    }
    for (m = jn_json_first(root); m != NULL && rc == 0; m = jn_json_next(m)) {
        const char *name = jn_json_name(m, &len);
        for (i = 0; i < len && i + 1 < sizeof(lower); i++)
            lower[i] = (char)tolower((unsigned char)name[i]);
        lower[i] = '\0';
        for (i = 0; secret_names[i] != NULL; i++)
            if (strstr(lower, secret_names[i]) != NULL) {
                rc = jn_errorf(err, errlen,
                               "--config member '%.64s' looks like a credential: the config is"
                               " stored in clear; store the secret in the vault (junction creds"
                               " put) and name it with --credential",
                               name);
                break;
            }
    }
done:
    jn_json_free(root);
    return rc;
}

static int check_word(const char *what, const char *v, const char *extra, size_t max, char *err,
                      size_t errlen)
{
    const char *p;

    if (*v == '\0' || strlen(v) > max)
        return jn_errorf(err, errlen, "%s must be 1 to %zu characters", what, max);
    for (p = v; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr(extra, *p))
            return jn_errorf(err, errlen, "%s '%s': character '%c' is not allowed", what, v,
                             isprint((unsigned char)*p) ? *p : '?');
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);

    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The provider types of the connectors in dir that load; *n 0 when none do. */
static void known_providers(const char *dir, char *list, size_t len, int *n, const char *want,
                            int *found)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4096], *errors;
    size_t used = 0;
    jn_connector_t *c;

    *n = 0;
    *found = 0;
    list[0] = '\0';
    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (!ends_with(e->d_name, ".lua") || e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        c = jn_connector_load_file(path, &errors);
        free(errors);
        if (c == NULL)
            continue;
        (*n)++;
        if (strcmp(c->provider_type, want) == 0)
            *found = 1;
        if (used < len) {
            int w = snprintf(list + used, len - used, "%s%s", used ? ", " : "", c->provider_type);
            if (w > 0)
                used += (size_t)w;
        }
        jn_connector_unref(c);
    }
    closedir(d);
}

static int validate_add(const args_t *a, const jn_config_t *cfg, jn_integration_t *it, char *sched,
                        size_t slen, char *err, size_t errlen)
{
    const char *dir = jn_config_str(cfg, "connectors_dir");
    char providers[512];
    int n, found;

    if (jn_cli_check_id("integration id", a->id, err, errlen) != 0 ||
        jn_cli_check_id("--org", a->org, err, errlen) != 0 ||
        check_word("--provider", a->provider, "_.-", 64, err, errlen) != 0)
        return -1;
    if (a->credential && a->token_env)
        return jn_errorf(err, errlen, "--credential and --token-env exclude each other");
    if (a->credential && check_word("--credential", a->credential, "_.:-", 128, err, errlen) != 0)
        return -1;
    if (a->token_env) {
        if (check_word("--token-env", a->token_env, "_", 128, err, errlen) != 0)
            return -1;
        if (isdigit((unsigned char)a->token_env[0]))
            return jn_errorf(err, errlen, "--token-env '%s' is not a variable name", a->token_env);
        if (strncmp(a->token_env, "JUNCTION_", 9) == 0)
            return jn_errorf(err, errlen,
                             "--token-env '%s': JUNCTION_* variables are configuration keys;"
                             " choose another name",
                             a->token_env);
    }
    if (a->auth_scheme && !a->token_env)
        return jn_errorf(err, errlen, "--auth-scheme applies to --token-env only");
    if (a->auth_scheme && check_word("--auth-scheme", a->auth_scheme, "-", 32, err, errlen) != 0)
        return -1;
    if (a->config_json && check_config(a->config_json, err, errlen) != 0)
        return -1;
    if (a->priority && jn_priority_parse(a->priority) < 0)
        return jn_errorf(err, errlen, "--priority must be high, normal or low, got '%s'",
                         a->priority);
    if (a->version && check_word("--connector-version", a->version, ".+-", 64, err, errlen) != 0)
        return -1;
    if (jn_cli_schedule(cfg, a->schedule, a->jitter, sched, slen, &it->jitter_ms, err, errlen) != 0)
        return -1;
    known_providers(dir, providers, sizeof(providers), &n, a->provider, &found);
    if (n == 0)
        fprintf(stderr,
                "junction: warning: no connector loads from '%s'; provider '%s' is not"
                " checked\n",
                dir, a->provider);
    else if (!found)
        return jn_errorf(err, errlen, "unknown provider '%s' (connectors in '%s': %s)", a->provider,
                         dir, providers);
    it->id = a->id;
    it->organization_id = a->org;
    it->provider = a->provider;
    it->credential_id = a->credential;
    it->token_env = a->token_env;
    it->auth_scheme = a->auth_scheme;
    it->config_json = a->config_json ? a->config_json : "{}";
    it->schedule = sched;
    it->priority = a->priority ? a->priority : "normal";
    it->enabled = !a->disabled;
    it->connector_version = a->version;
    return 0;
}

/* ---- commands ------------------------------------------------------------- */

static int show_one(jn_cli_env_t *e, const char *id, int json)
{
    jn_integration_t it;
    jn_buf_t out = {0};
    last_job_t lj;
    char *strings = NULL;
    int rc = jn_store_integration_get(e->store, id, &it, &strings);

    if (rc != 0) {
        if (rc > 0)
            fprintf(stderr, "junction: no integration '%s'\n", id);
        else
            fprintf(stderr, "junction: %s\n", jn_store_errmsg(e->store));
        return rc > 0 ? 2 : 1;
    }
    lj = last_job(e->store, id);
    if (json)
        integration_json(&out, &it, &lj);
    else
        integration_show_table(&out, &it, &lj);
    print_text(out.data ? out.data : "");
    jn_buf_free(&out);
    free(strings);
    return 0;
}

static int cmd_add(const args_t *a)
{
    jn_cli_env_t e;
    jn_integration_t it = {0};
    char sched[256], err[768];
    int rc;

    if (a->id == NULL)
        return usage_error("integrations add: the integration ID is required");
    if (a->org == NULL)
        return usage_error("integrations add: --org ORG is required");
    if (a->provider == NULL)
        return usage_error("integrations add: --provider PROVIDER is required");
    if ((rc = jn_cli_env_open(&e, a->config_file, a->data_dir)) != 0)
        return rc;
    if (validate_add(a, e.cfg, &it, sched, sizeof(sched), err, sizeof(err)) != 0) {
        fprintf(stderr, "junction: %s\n", err);
        jn_cli_env_close(&e);
        return 2;
    }
    rc = jn_store_integration_insert(e.store, &it);
    if (rc != 0) {
        if (rc > 0)
            fprintf(stderr,
                    "junction: integration '%s' exists already (junction integrations rm %s"
                    " first to replace it)\n",
                    a->id, a->id);
        else
            fprintf(stderr, "junction: cannot store integration '%s': %s\n", a->id,
                    jn_store_errmsg(e.store));
        jn_cli_env_close(&e);
        return rc > 0 ? 2 : 1;
    }
    rc = show_one(&e, a->id, a->json);
    jn_cli_env_close(&e);
    return rc;
}

typedef struct {
    jn_integration_t *items;
    char **strings;
    size_t n, cap;
    int oom;
} list_t;

/* Copies each row: the store must not be called from inside the callback. */
static int list_cb(void *ud, const jn_integration_t *it)
{
    list_t *l = ud;
    jn_buf_t b = {0};
    const char *src[10] = {it->id,        it->organization_id,  it->provider,    it->credential_id,
                           it->token_env, it->auth_scheme,      it->config_json, it->schedule,
                           it->priority,  it->connector_version};
    const char **dst[10];
    size_t i, off[10];

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        jn_integration_t *items = realloc(l->items, cap * sizeof(*items));
        char **strings = items ? realloc(l->strings, cap * sizeof(*strings)) : NULL;
        if (items)
            l->items = items;
        if (strings == NULL) {
            l->oom = 1;
            return 1;
        }
        l->strings = strings;
        l->cap = cap;
    }
    for (i = 0; i < 10; i++) {
        off[i] = b.len;
        if (src[i] && jn_buf_append(&b, src[i], strlen(src[i]) + 1) != 0) {
            l->oom = 1;
            jn_buf_free(&b);
            return 1;
        }
    }
    l->items[l->n] = *it;
    dst[0] = &l->items[l->n].id;
    dst[1] = &l->items[l->n].organization_id;
    dst[2] = &l->items[l->n].provider;
    dst[3] = &l->items[l->n].credential_id;
    dst[4] = &l->items[l->n].token_env;
    dst[5] = &l->items[l->n].auth_scheme;
    dst[6] = &l->items[l->n].config_json;
    dst[7] = &l->items[l->n].schedule;
    dst[8] = &l->items[l->n].priority;
    dst[9] = &l->items[l->n].connector_version;
    for (i = 0; i < 10; i++)
        *dst[i] = src[i] ? b.data + off[i] : NULL;
    l->strings[l->n++] = b.data;
    return 0;
}

static int cmd_list(const args_t *a)
{
    jn_integration_filter_t f = {a->org, a->provider, -1, 0, NULL};
    jn_cli_env_t e;
    list_t l = {0};
    jn_buf_t out = {0};
    size_t i;
    int rc;

    if ((rc = jn_cli_env_open(&e, a->config_file, a->data_dir)) != 0)
        return rc;
    if (jn_store_integration_each(e.store, &f, list_cb, &l) != 0 || l.oom) {
        fprintf(stderr, "junction: cannot list integrations: %s\n",
                l.oom ? "out of memory" : jn_store_errmsg(e.store));
        rc = 1;
    } else {
        if (!a->json)
            jn_buf_puts(&out, list_header);
        for (i = 0; i < l.n; i++) {
            last_job_t lj = last_job(e.store, l.items[i].id);
            if (a->json)
                integration_json(&out, &l.items[i], &lj);
            else
                integration_row(&out, &l.items[i], &lj);
            if (out.len > 65536) {
                print_text(out.data);
                jn_buf_free(&out);
            }
        }
        if (out.data)
            print_text(out.data);
        if (l.n == 0)
            fprintf(stderr, "junction: no integrations\n");
    }
    for (i = 0; i < l.n; i++)
        free(l.strings[i]);
    free(l.items);
    free(l.strings);
    jn_buf_free(&out);
    jn_cli_env_close(&e);
    return rc;
}

static int cmd_show(const args_t *a)
{
    jn_cli_env_t e;
    int rc;

    if (a->id == NULL)
        return usage_error("integrations show: the integration ID is required");
    if ((rc = jn_cli_env_open(&e, a->config_file, a->data_dir)) != 0)
        return rc;
    rc = show_one(&e, a->id, a->json);
    jn_cli_env_close(&e);
    return rc;
}

static void print_result(const args_t *a, const char *id, const char *what, const char *text)
{
    jn_buf_t out = {0};

    if (a->json) {
        jn_buf_puts(&out, "{\"id\":");
        buf_str(&out, id);
        jn_buf_puts(&out, ",\"");
        jn_buf_puts(&out, what);
        jn_buf_puts(&out, "\":true}\n");
    } else {
        jn_buf_puts(&out, text);
        jn_buf_puts(&out, "\n");
    }
    print_text(out.data);
    jn_buf_free(&out);
}

static int cmd_set_enabled(const args_t *a, int enabled)
{
    jn_cli_env_t e;
    char text[256];
    int rc;

    if (a->id == NULL)
        return usage_error(enabled ? "integrations enable: the integration ID is required"
                                   : "integrations disable: the integration ID is required");
    if ((rc = jn_cli_env_open(&e, a->config_file, a->data_dir)) != 0)
        return rc;
    rc = jn_store_integration_set_enabled(e.store, a->id, enabled);
    if (rc != 0) {
        if (rc > 0)
            fprintf(stderr, "junction: no integration '%s'\n", a->id);
        else
            fprintf(stderr, "junction: %s\n", jn_store_errmsg(e.store));
        jn_cli_env_close(&e);
        return rc > 0 ? 2 : 1;
    }
    snprintf(text, sizeof(text), "integration '%s' %s", a->id, enabled ? "enabled" : "disabled");
    print_result(a, a->id, enabled ? "enabled" : "disabled", text);
    jn_cli_env_close(&e);
    return 0;
}

static int cmd_rm(const args_t *a)
{
    jn_cli_env_t e;
    char text[256];
    int rc;

    if (a->id == NULL)
        return usage_error("integrations rm: the integration ID is required");
    if ((rc = jn_cli_env_open(&e, a->config_file, a->data_dir)) != 0)
        return rc;
    rc = jn_store_integration_delete(e.store, a->id);
    if (rc != 0) {
        if (rc > 0)
            fprintf(stderr, "junction: no integration '%s'\n", a->id);
        else
            fprintf(stderr, "junction: %s\n", jn_store_errmsg(e.store));
        jn_cli_env_close(&e);
        return rc > 0 ? 2 : 1;
    }
    snprintf(text, sizeof(text),
             "integration '%s' removed (its evidence and job records are kept; queued runs are"
             " cancelled when a worker picks them up)",
             a->id);
    print_result(a, a->id, "removed", text);
    jn_cli_env_close(&e);
    return 0;
}

static int cmd_sync(const args_t *a)
{
    jn_cli_env_t e;
    jn_integration_t it;
    jn_queue_enqueued_t q;
    jn_buf_t out = {0};
    char *strings = NULL, err[768];
    int rc, prio = JN_PRIORITY_HIGH;

    if (a->id == NULL)
        return usage_error("integrations sync: the integration ID is required");
    if (a->priority && (prio = jn_priority_parse(a->priority)) < 0) {
        fprintf(stderr, "junction: --priority must be high, normal or low, got '%s'\n",
                a->priority);
        return 2;
    }
    if ((rc = jn_cli_env_open(&e, a->config_file, a->data_dir)) != 0)
        return rc;
    rc = jn_store_integration_get(e.store, a->id, &it, &strings);
    if (rc != 0) {
        if (rc > 0)
            fprintf(stderr, "junction: no integration '%s'\n", a->id);
        else
            fprintf(stderr, "junction: %s\n", jn_store_errmsg(e.store));
        jn_cli_env_close(&e);
        return rc > 0 ? 2 : 1;
    }
    if (!it.enabled) {
        fprintf(stderr,
                "junction: integration '%s' is disabled; enable it first (junction integrations"
                " enable %s)\n",
                a->id, a->id);
        rc = 2;
    } else if (jn_cli_enqueue_run(e.store, e.queue, &it, "manual", 0, (jn_priority_t)prio, 0, &q,
                                  err, sizeof(err)) != 0) {
        fprintf(stderr, "junction: %s\n", err);
        rc = 1;
    } else if (a->json) {
        jn_buf_puts(&out, "{\"job_id\":");
        buf_str(&out, q.id);
        jn_buf_puts(&out, ",\"integration_id\":");
        buf_str(&out, it.id);
        jn_buf_puts(&out, ",\"priority\":");
        buf_str(&out, jn_priority_name((jn_priority_t)prio));
        jn_buf_puts(&out, q.coalesced == JN_CLI_STREAM_ABSORBED ? ",\"status\":\"running\"}\n"
                                                                : ",\"status\":\"queued\"}\n");
        print_text(out.data);
    } else {
        char line[512];
        if (q.coalesced == JN_CLI_STREAM_ABSORBED)
            snprintf(line, sizeof(line),
                     "integration '%s' is streaming (job %s is running); nothing was queued\n",
                     it.id, q.id);
        else
            snprintf(line, sizeof(line), "queued job %s for integration '%s' (priority %s)\n", q.id,
                     it.id, jn_priority_name((jn_priority_t)prio));
        print_text(line);
    }
    jn_buf_free(&out);
    free(strings);
    jn_cli_env_close(&e);
    return rc;
}

int jn_cli_integrations(int argc, char **argv)
{
    args_t a = {0};
    const char *cmd = argc >= 2 ? argv[1] : NULL;
    int rc;

    if (cmd == NULL || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
        strcmp(cmd, "help") == 0) {
        fputs(integrations_usage, cmd ? stdout : stderr);
        return cmd ? 0 : 2;
    }
    rc = parse_args(argc - 1, argv + 1, &a, strcmp(cmd, "add") == 0);
    if (rc != 0) {
        if (rc == -2)
            return 2;
        fputs(integrations_usage, rc > 0 ? stdout : stderr);
        return rc > 0 ? 0 : 2;
    }
    if (strcmp(cmd, "add") == 0)
        return cmd_add(&a);
    if (strcmp(cmd, "list") == 0)
        return cmd_list(&a);
    if (strcmp(cmd, "show") == 0)
        return cmd_show(&a);
    if (strcmp(cmd, "disable") == 0)
        return cmd_set_enabled(&a, 0);
    if (strcmp(cmd, "enable") == 0)
        return cmd_set_enabled(&a, 1);
    if (strcmp(cmd, "rm") == 0)
        return cmd_rm(&a);
    if (strcmp(cmd, "sync") == 0)
        return cmd_sync(&a);
    fprintf(stderr, "junction: unknown integrations command '%s'\n\n%s", cmd, integrations_usage);
    return 2;
}
