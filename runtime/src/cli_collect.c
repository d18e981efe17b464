/* junction collect FILE: one collect_evidence run, evidence on stdout. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "job.h"
#include "json_canon.h"
#include "junction/log.h"
#include "runtime.h"
#include "token_cache.h"

typedef struct {
    int done;
    int failed;
    char *checkpoint;
} collect_state_t;

static int print_item(void *ud, jn_job_t *job, const jn_evidence_t *it, char *err, size_t errlen)
{
    jn_buf_t b = {0};

    (void)ud, (void)job;
    if (jn_evidence_append_json(&b, it) != 0 || jn_buf_append(&b, "\n", 1) != 0 ||
        fwrite(b.data, 1, b.len, stdout) != b.len) {
        snprintf(err, errlen, "cannot write evidence to stdout");
        jn_buf_free(&b);
        return -1;
    }
    jn_buf_free(&b);
    return 0;
}

static void on_done(void *ud, jn_job_t *job)
{
    collect_state_t *st = ud;
    char items[32], requests[32], mem[32];
    jn_log_field_t fields[] = {
        {"job_id", jn_job_id(job), 0}, {"status", jn_job_status_name(jn_job_status(job)), 0},
        {"items", items, 1},           {"requests", requests, 1},
        {"memory_peak_bytes", mem, 1}, {"error", jn_job_error(job) ? jn_job_error(job) : "", 0},
    };

    snprintf(items, sizeof(items), "%" PRId64, jn_job_items(job));
    snprintf(requests, sizeof(requests), "%" PRId64, jn_job_requests(job));
    snprintf(mem, sizeof(mem), "%zu", jn_job_memory_peak(job));
    st->done = 1;
    st->failed = jn_job_status(job) != JN_JOB_SUCCEEDED;
    if (jn_job_checkpoint_json(job))
        st->checkpoint = strdup(jn_job_checkpoint_json(job));
    jn_log_fields(st->failed ? JN_LOG_ERROR : JN_LOG_INFO,
                  st->failed ? "collection failed" : "collection finished", fields,
                  jn_job_error(job) ? 6 : 5);
}

typedef struct {
    const char *config_json, *token_file, *token_env, *scheme, *integration, *org, *data_dir,
        *config_file, *credential;
    const char *allow[64];
    int nallow;
} collect_args_t;

#define OPT(kind, name, field, arg, help)                                                          \
    {                                                                                              \
        (name), 0, (kind), offsetof(collect_args_t, field), 0, 0, 0, (arg), (help)                 \
    }

/* The options and the usage they print. */
static const jn_cli_opt_t collect_opts[] = {
    OPT(JN_CLI_OPT_STRING, "config", config_json, "JSON",
        "the integration's non-secret config (default {})"),
    {"allow-host", 0, JN_CLI_OPT_LIST, offsetof(collect_args_t, allow),
     offsetof(collect_args_t, nallow), 0, 64, "HOST",
     "let the connector reach HOST (host or host:port) although it\n"
     "is private or loopback, e.g. a provider simulator (repeatable)"},
    OPT(JN_CLI_OPT_STRING, "token-file", token_file, "FILE",
        "credential sent as 'Authorization: <scheme> <token>' to the"),
    OPT(JN_CLI_OPT_STRING, "token-env", token_env, "VAR",
        "connector's egress hosts (never visible to Lua)"),
    OPT(JN_CLI_OPT_STRING, "auth-scheme", scheme, "WORD", "Bearer (default), token, SSWS, ..."),
    OPT(JN_CLI_OPT_STRING, "credential", credential, "ID",
        "inject credential ID of --org from the vault (the store in\n"
        "--data-dir or data_dir; master key from\n"
        "JUNCTION_MASTER_KEY_FILE or JUNCTION_MASTER_KEY)"),
    OPT(JN_CLI_OPT_STRING, "integration", integration, "ID",
        "integration id; with a store, its checkpoint is kept"),
    OPT(JN_CLI_OPT_STRING, "org", org, "ID", "organization id (default local)"),
    OPT(JN_CLI_OPT_STRING, "data-dir", data_dir, "DIR",
        "keep checkpoints in DIR's store (needs --integration)"),
    OPT(JN_CLI_OPT_STRING, "config-file", config_file, "FILE",
        "runtime config file (limits, timeouts)"),
    JN_CLI_HELP,
    JN_CLI_END};
#undef OPT

static void collect_usage(FILE *out)
{
    fputs("usage: junction collect FILE [options]\n", out);
    jn_cli_opts_usage(out, collect_opts, 22);
}

/* The index of FILE, or -1 (the caller prints the usage). */
static int parse_args(int argc, char **argv, collect_args_t *a)
{
    char err[512];
    int first;

    a->scheme = "Bearer";
    first = jn_cli_opts_parse(collect_opts, argc, argv, a, err, sizeof(err));
    if (first < 0)
        jn_cli_opts_print_error(first, err);
    return first == argc - 1 ? first : -1;
}

typedef struct {
    jn_vault_t *vault;
    const char *org, *credential_id;
} rotation_owner_t;

/* The vault that seals the tokens shared through Redis (token_cache.h). */
static jn_vault_t *collect_vault(void *ud)
{
    return ud;
}

/* oauth2: the provider rotated the refresh token; the vault keeps the new one. */
static void on_rotated(void *ud, const jn_auth_t *old, const char *doc)
{
    rotation_owner_t *o = ud;
    (void)old; /* one credential per collect */
    jn_cli_store_rotated(o->vault, o->org, o->credential_id, doc);
}

int jn_cli_collect(int argc, char **argv)
{
    collect_args_t a = {0};
    collect_state_t st = {0};
    jn_job_opts_t opts = {0};
    jn_runtime_t rt;
    jn_config_t *cfg = NULL;
    jn_connector_t *conn = NULL;
    jn_store_t *store = NULL;
    jn_keyprovider_t *kp = NULL;
    jn_vault_t *vault = NULL;
    jn_auth_t *cred_auth = NULL;
    uv_loop_t loop;
    char *auth = NULL, *errors = NULL, *checkpoint = NULL, err[512];
    const char *auth_headers[1];
    rotation_owner_t owner = {0};
    int i, idx, rc = 2;

    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        collect_usage(stdout);
        return 0;
    }
    idx = parse_args(argc, argv, &a);
    if (idx < 0) {
        collect_usage(stderr);
        return 2;
    }
    if (a.credential && (a.token_file || a.token_env)) {
        fprintf(stderr, "junction: --credential excludes --token-file and --token-env\n");
        return 2;
    }
    if ((a.token_file || a.token_env) &&
        (auth = jn_cli_auth_header(a.token_file, a.token_env, a.scheme)) == NULL)
        return 2;
    if ((cfg = jn_cli_load_config(a.config_file)) == NULL)
        goto out;
    conn = jn_connector_load_file(argv[idx], &errors);
    if (conn == NULL) {
        fputs(errors ? errors : "out of memory\n", stderr);
        goto out;
    }
    if (a.credential) {
        char requester[4200];
        const char *org = a.org ? a.org : "local";
        if ((store = jn_cli_open_store(a.data_dir ? a.data_dir : jn_config_str(cfg, "data_dir"))) ==
                NULL ||
            (vault = jn_cli_open_vault(store, NULL, &kp)) == NULL)
            goto out;
        snprintf(requester, sizeof(requester), "collect:%s", argv[idx]);
        rc = jn_cli_credential_auth(vault, org, a.credential, 0, requester, &cred_auth, NULL, err,
                                    sizeof(err));
        if (rc != 0) {
            fprintf(stderr, "junction: credential '%s': %s\n", a.credential, err);
            rc = rc == JN_VAULT_EINVAL || rc == JN_VAULT_ENOTFOUND ? 2 : 1;
            goto out;
        }
        rc = 2;
    }
    if (a.data_dir && a.integration) {
        if (store == NULL && (store = jn_cli_open_store(a.data_dir)) == NULL)
            goto out;
        if (jn_store_checkpoint_get(store, a.integration, &checkpoint) < 0) {
            fprintf(stderr, "junction: %s\n", jn_store_errmsg(store));
            goto out;
        }
    }
    uv_loop_init(&loop);
    if (jn_runtime_init(&rt, &loop, cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "junction: %s\n", err);
        uv_loop_close(&loop);
        goto out;
    }
    for (i = 0; i < a.nallow; i++)
        jn_runtime_allow_host(&rt, a.allow[i]);
    if (vault && a.credential) {
        owner = (rotation_owner_t){vault, a.org ? a.org : "local", a.credential};
        rt.on_credential_rotated = on_rotated;
        rt.rotated_ud = &owner;
        jn_token_cache_use_vault(&rt, collect_vault, vault);
    }
    opts.connector = conn;
    opts.entry = "collect_evidence";
    opts.config_json = a.config_json ? a.config_json : "{}";
    {
        /* collect_evidence(ctx, config): the config is also its argument */
        size_t n = strlen(opts.config_json) + 3;
        char *args = malloc(n);
        if (args)
            snprintf(args, n, "[%s]", opts.config_json);
        opts.args_json = args;
    }
    opts.checkpoint_json = checkpoint;
    opts.integration_id = a.integration;
    opts.organization_id = a.org;
    if (auth) {
        auth_headers[0] = auth;
        opts.auth_headers = auth_headers;
        opts.nauth_headers = 1;
    }
    opts.auth = cred_auth;
    opts.hooks = (jn_job_hooks_t){print_item, on_done, &st};
    if (jn_job_start(&rt, &opts, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "junction: %s\n", err);
        rc = 1;
    } else {
        uv_run(&loop, UV_RUN_DEFAULT);
        rc = st.failed ? 1 : 0;
    }
    free((char *)opts.args_json);
    fflush(stdout);
    if (rc == 0 && store && a.data_dir && a.integration && st.checkpoint &&
        jn_store_checkpoint_set(store, a.integration, st.checkpoint) != 0) {
        fprintf(stderr, "junction: %s\n", jn_store_errmsg(store));
        rc = 1;
    }
    jn_runtime_close(&rt);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
out:
    free(st.checkpoint);
    free(checkpoint);
    free(errors);
    if (auth) {
        memset(auth, 0, strlen(auth));
        free(auth);
    }
    jn_connector_unref(conn);
    if (cred_auth)
        jn_auth_free(cred_auth);
    if (vault)
        jn_vault_destroy(vault);
    if (kp)
        jn_keyprovider_destroy(kp);
    if (store)
        jn_store_close(store);
    if (cfg)
        jn_config_destroy(cfg);
    return rc;
}
