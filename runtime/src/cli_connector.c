/* junction connector ...: validate, the authoring kit (new, test), deploys
 * (deploy, rollback, history) and signing (keygen, sign).
 *
 * deploy, rollback and history work on the store of data_dir, whether a
 * `junction run` uses it or not: the store is the registry's source of
 * truth, and a running process polls it for deploys (connector_poll_ms).
 * With redis_url set they work on the cluster's versions and history in
 * Redis, and a deploy is announced to every node (store_redis.h).
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "connector.h"
#include "connector_sig.h"
#include "json_canon.h"
#include "junction/clock.h"
#include "junction/error.h"
#include "junction/json.h"
#include "junction/log.h"
#include "kit.h"
#include "registry.h"
#include "replay.h"

static const char connector_usage[] =
    "usage: junction connector <command> [options]\n"
    "\n"
    "  validate FILE...                 check connectors against the contract\n"
    "  new NAME [options]               write a connector scaffold, its spec and fixtures folder\n"
    "  test FILE [--record] [options]   run the connector's spec against its recorded fixtures\n"
    "                                   (or record them against the provider or a simulator)\n"
    "  deploy FILE [options]            validate and deploy a version (live within\n"
    "                                   connector_poll_ms in a running `junction run`)\n"
    "  rollback PROVIDER [VERSION]      make a previously deployed version live again\n"
    "  history PROVIDER                 the provider's deploys, newest first\n"
    "  keygen [--out KEY.pem]           generate an Ed25519 signing key pair\n"
    "  sign FILE --key KEY.pem          write FILE.sig, the detached signature\n"
    "\n"
    "`junction connector <command> --help` describes a command's options.\n";

/* ---- shared ---- */

static int wants_help(int argc, char **argv)
{
    int i;

    for (i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    return 0;
}

/* "cli:<user>": who deployed, for the history. */
static void default_actor(char *buf, size_t len)
{
    const char *user = getenv("USER");
    struct passwd *pw;

    if (user == NULL || *user == '\0') {
        pw = getpwuid(getuid());
        user = pw ? pw->pw_name : "unknown";
    }
    snprintf(buf, len, "cli:%s", user);
}

static int write_file(const char *path, const char *text, size_t len, mode_t mode, char *err,
                      size_t errlen)
{
    FILE *f = fopen(path, "wb");

    if (f == NULL)
        return jn_errorf(err, errlen, "cannot write '%s': %s", path, strerror(errno));
    if (fwrite(text, 1, len, f) != len) {
        fclose(f);
        return jn_errorf(err, errlen, "cannot write '%s': %s", path, strerror(errno));
    }
    if (fclose(f) != 0)
        return jn_errorf(err, errlen, "cannot write '%s': %s", path, strerror(errno));
    chmod(path, mode);
    return 0;
}

jn_registry_t *jn_cli_open_registry(const jn_config_t *cfg, jn_store_t *store, uv_loop_t *loop,
                                    jn_trusted_keys_t **keys, char *err, size_t errlen)
{
    jn_registry_opts_t o = {0};
    const char *const *files;
    jn_registry_t *r;
    size_t n;

    *keys = NULL;
    if (jn_connector_mode_parse(jn_config_str(cfg, "connector_mode"), &o.mode) != 0) {
        jn_errorf(err, errlen, "connector_mode must be development or production");
        return NULL;
    }
    files = jn_config_list(cfg, "connector_trusted_keys", &n);
    *keys = jn_trusted_keys_load(files, n, err, errlen);
    if (*keys == NULL)
        return NULL;
    o.store = store;
    o.keys = *keys;
    o.loop = loop;
    r = jn_registry_create(&o, err, errlen);
    if (r == NULL) {
        jn_trusted_keys_free(*keys);
        *keys = NULL;
    }
    return r;
}

/* The config, the store of data_dir and a registry on it, for deploy,
 * rollback and history. */
typedef struct {
    jn_config_t *cfg;
    jn_store_t *store;
    jn_trusted_keys_t *keys;
    jn_registry_t *registry;
} registry_env_t;

static void registry_env_close(registry_env_t *e)
{
    jn_registry_destroy(e->registry);
    jn_trusted_keys_free(e->keys);
    if (e->store)
        jn_store_close(e->store);
    if (e->cfg)
        jn_config_destroy(e->cfg);
}

/* 0, or the exit code after printing the reason. */
static int registry_env_open(registry_env_t *e, const char *config, const char *data_dir)
{
    char err[1024];

    memset(e, 0, sizeof(*e));
    if ((e->cfg = jn_cli_load_config(config)) == NULL)
        return 2;
    e->store = jn_cli_open_store(data_dir ? data_dir : jn_config_str(e->cfg, "data_dir"));
    if (e->store == NULL || jn_cli_cluster_store(e->store, e->cfg) < 0) {
        registry_env_close(e);
        return 1;
    }
    e->registry = jn_cli_open_registry(e->cfg, e->store, NULL, &e->keys, err, sizeof(err));
    if (e->registry == NULL) {
        fprintf(stderr, "junction: %s\n", err);
        registry_env_close(e);
        return 2;
    }
    return 0;
}

/* Options of deploy, rollback and history. */
typedef struct {
    const char *config, *data_dir, *actor, *format, *limit_text;
    int no_specs, dry_run;
    long limit;
} registry_args_t;

static const jn_cli_opt_t registry_opts[] = {JN_CLI_STR(registry_args_t, "config", config),
                                             JN_CLI_STR(registry_args_t, "config-file", config),
                                             JN_CLI_STR(registry_args_t, "data-dir", data_dir),
                                             JN_CLI_STR(registry_args_t, "actor", actor),
                                             JN_CLI_FLAG(registry_args_t, "no-specs", no_specs),
                                             JN_CLI_FLAG(registry_args_t, "dry-run", dry_run),
                                             JN_CLI_STR(registry_args_t, "limit", limit_text),
                                             JN_CLI_STR(registry_args_t, "format", format),
                                             JN_CLI_END};

/* Parses argv (argv[0] is the subcommand); returns the index of the first
 * operand, or -1 after printing why (and the usage for a bad option). */
static int parse_registry_args(int argc, char **argv, registry_args_t *a, const char *usage)
{
    char err[512], *end;
    int first;

    memset(a, 0, sizeof(*a));
    first = jn_cli_opts_parse(registry_opts, argc, argv, a, err, sizeof(err));
    if (first < 0) {
        jn_cli_opts_print_error(first, err);
        fputs(usage, stderr);
        return -1;
    }
    if (a->limit_text != NULL) {
        a->limit = strtol(a->limit_text, &end, 10);
        if (*a->limit_text == '\0' || *end != '\0' || a->limit < 0) {
            fprintf(stderr, "junction: --limit must be a whole number >= 0\n");
            return -1;
        }
    }
    if (a->format != NULL && strcmp(a->format, "text") != 0 && strcmp(a->format, "json") != 0) {
        fprintf(stderr, "junction: --format must be text or json\n");
        return -1;
    }
    return first;
}

/* ---- validate ---- */

static int validate(int argc, char **argv)
{
    int i, failed = 0;
    char *errors;
    jn_connector_t *c;

    if (argc < 1) {
        fprintf(stderr, "usage: junction connector validate FILE...\n");
        return 2;
    }
    for (i = 0; i < argc; i++) {
        c = jn_connector_load_file(argv[i], &errors);
        if (c == NULL) {
            fputs(errors ? errors : "out of memory\n", stderr);
            free(errors);
            failed = 1;
            continue;
        }
        printf("%s: ok (%s %s, capabilities:", argv[i], c->provider_type, c->version);
        for (size_t k = 0; k < c->capabilities.count; k++)
            printf(" %s", c->capabilities.items[k]);
        printf(")\n");
        jn_connector_unref(c);
    }
    return failed ? 1 : 0;
}

/* ---- deploy, rollback, history ---- */

static const char deploy_usage[] =
    "usage: junction connector deploy FILE [options]\n"
    "  Validates FILE (signature in production mode, the sandboxed load, metadata and\n"
    "  capability functions, a version higher than the live one, and the specs of\n"
    "  DIR/tests/NAME_spec.lua against DIR/tests/fixtures/NAME when both exist), then\n"
    "  stores it as the provider's live version. A running `junction run` on the same\n"
    "  data_dir picks it up within connector_poll_ms. FILE.sig, when present, is its\n"
    "  signature.\n"
    "  --config FILE     runtime config (data_dir, connector_mode, connector_trusted_keys);\n"
    "                    --config-file FILE means the same\n"
    "  --data-dir DIR    the store's directory (default: data_dir)\n"
    "  --actor NAME      recorded in the history (default cli:$USER)\n"
    "  --no-specs        do not run the connector's specs\n"
    "  --dry-run         validate only; nothing is deployed\n";

static void print_deploy(const char *what, const jn_deploy_result_t *out)
{
    printf("%s %s %s", what, out->provider, out->version);
    if (out->previous[0])
        printf(" (was %s)", out->previous);
    if (out->deploy_id > 0)
        printf(", deploy %" PRId64, out->deploy_id);
    printf(", sha256 %.12s, %s\n", out->sha256, out->key_id[0] ? out->key_id : "unsigned");
}

/* The connector's own specs against its recorded fixtures. 0 passed (or
 * none to run), 1 failed. */
static int deploy_specs(const char *file)
{
    char spec[4096], fixtures[4096], config_path[4200], why[300], *config = NULL;
    struct stat st;
    jn_kit_t kit = {0};
    size_t len = 0;
    int rc;

    if (jn_kit_paths(file, spec, sizeof(spec), fixtures, sizeof(fixtures)) != 0)
        return 0;
    if (stat(spec, &st) != 0) {
        printf("no spec (%s): specs not run\n", spec);
        return 0;
    }
    if (stat(fixtures, &st) != 0 || !S_ISDIR(st.st_mode)) {
        printf("no recorded fixtures (%s): specs not run\n", fixtures);
        return 0;
    }
    snprintf(config_path, sizeof(config_path), "%s/config.json", fixtures);
    if (access(config_path, F_OK) == 0 &&
        (config = jn_connector_read_file(config_path, &len, why, sizeof(why))) == NULL) {
        fprintf(stderr, "junction: %s: %s\n", config_path, why);
        return 1;
    }
    kit.file = file;
    kit.spec = spec;
    kit.fixtures = fixtures;
    kit.config_json = config;
    printf("running %s against %s\n", spec, fixtures);
    fflush(stdout);
    rc = jn_spec_run_kit(&kit);
    free(config);
    return rc == 0 ? 0 : 1;
}

static int deploy(int argc, char **argv)
{
    registry_args_t a;
    registry_env_t e;
    jn_deploy_result_t out;
    char err[8192], actor[300];
    int idx, rc;

    if (wants_help(argc, argv)) {
        fputs(deploy_usage, stdout);
        return 0;
    }
    if ((idx = parse_registry_args(argc, argv, &a, deploy_usage)) < 0)
        return 2;
    if (argc - idx != 1) {
        fputs(deploy_usage, stderr);
        return 2;
    }
    if (a.actor == NULL)
        default_actor(actor, sizeof(actor));
    else
        snprintf(actor, sizeof(actor), "%s", a.actor);
    if ((rc = registry_env_open(&e, a.config, a.data_dir)) != 0)
        return rc;
    /* everything that needs no test run first: the signature (before any
     * compilation), the load and the version */
    rc = jn_registry_deploy_file(e.registry, argv[idx], actor, JN_DEPLOY_DRY_RUN, &out, err,
                                 sizeof(err));
    if (rc == 0 && out.unchanged) {
        print_deploy("already live:", &out);
        registry_env_close(&e);
        return 0;
    }
    if (rc == 0 && !a.no_specs && deploy_specs(argv[idx]) != 0) {
        snprintf(err, sizeof(err), "%s: its specs failed against its recorded fixtures (see above)",
                 argv[idx]);
        rc = -1;
    }
    if (rc == 0 && !a.dry_run)
        rc = jn_registry_deploy_file(e.registry, argv[idx], actor, 0, &out, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "junction: deploy refused; nothing changed:\n%s\n", err);
        registry_env_close(&e);
        return 1;
    }
    print_deploy(a.dry_run ? "valid, not deployed (dry run):" : "deployed", &out);
    registry_env_close(&e);
    return 0;
}

static const char rollback_usage[] =
    "usage: junction connector rollback PROVIDER [VERSION] [options]\n"
    "  Makes VERSION (default: the highest version below the live one) live again. Its\n"
    "  source comes from the store and is verified again (signature in production mode).\n"
    "  --config FILE     runtime config\n"
    "  --data-dir DIR    the store's directory (default: data_dir)\n"
    "  --actor NAME      recorded in the history (default cli:$USER)\n";

static int rollback(int argc, char **argv)
{
    registry_args_t a;
    registry_env_t e;
    jn_deploy_result_t out;
    char err[4096], actor[300];
    int idx, rc;

    if (wants_help(argc, argv)) {
        fputs(rollback_usage, stdout);
        return 0;
    }
    if ((idx = parse_registry_args(argc, argv, &a, rollback_usage)) < 0)
        return 2;
    if (argc - idx < 1 || argc - idx > 2) {
        fputs(rollback_usage, stderr);
        return 2;
    }
    if (a.actor == NULL)
        default_actor(actor, sizeof(actor));
    else
        snprintf(actor, sizeof(actor), "%s", a.actor);
    if ((rc = registry_env_open(&e, a.config, a.data_dir)) != 0)
        return rc;
    rc = jn_registry_rollback(e.registry, argv[idx], argc - idx == 2 ? argv[idx + 1] : NULL, actor,
                              &out, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "junction: rollback refused; nothing changed: %s\n", err);
        registry_env_close(&e);
        return 1;
    }
    print_deploy("rolled back:", &out);
    registry_env_close(&e);
    return 0;
}

static const char history_usage[] =
    "usage: junction connector history PROVIDER [options]\n"
    "  --config FILE     runtime config\n"
    "  --data-dir DIR    the store's directory (default: data_dir)\n"
    "  --limit N         at most N rows (default all)\n"
    "  --format text|json\n";

static int print_history(void *ud, const jn_registry_history_t *h)
{
    const char *format = ud;
    char when[40];
    jn_buf_t b = {0};

    jn_format_rfc3339(h->deployed_ms, when, sizeof(when));
    if (strcmp(format, "json") != 0) {
        printf("%-6" PRId64 " %-24s %-12s %-8s %-20s %-16s %.12s%s\n", h->deploy_id, when,
               h->version, h->action, h->actor, h->key_id ? h->key_id : "unsigned",
               h->source_sha256, h->live ? "  live" : "");
        return 0;
    }
    /* one JSON object per line */
    jn_buf_puts(&b, "{\"deploy_id\":");
    {
        char num[32];
        snprintf(num, sizeof(num), "%" PRId64, h->deploy_id);
        jn_buf_puts(&b, num);
    }
    jn_buf_puts(&b, ",\"provider\":");
    jn_json_append_string(&b, h->provider, strlen(h->provider));
    jn_buf_puts(&b, ",\"version\":");
    jn_json_append_string(&b, h->version, strlen(h->version));
    jn_buf_puts(&b, ",\"action\":");
    jn_json_append_string(&b, h->action, strlen(h->action));
    jn_buf_puts(&b, ",\"actor\":");
    jn_json_append_string(&b, h->actor, strlen(h->actor));
    jn_buf_puts(&b, ",\"key_id\":");
    if (h->key_id)
        jn_json_append_string(&b, h->key_id, strlen(h->key_id));
    else
        jn_buf_puts(&b, "null");
    jn_buf_puts(&b, ",\"sha256\":");
    jn_json_append_string(&b, h->source_sha256, strlen(h->source_sha256));
    jn_buf_puts(&b, ",\"deployed_at\":");
    jn_json_append_string(&b, when, strlen(when));
    jn_buf_puts(&b, h->live ? ",\"live\":true}" : ",\"live\":false}");
    if (b.data)
        puts(b.data);
    jn_buf_free(&b);
    return 0;
}

static int history(int argc, char **argv)
{
    registry_args_t a;
    registry_env_t e;
    char err[1024];
    int idx, rc;

    if (wants_help(argc, argv)) {
        fputs(history_usage, stdout);
        return 0;
    }
    if ((idx = parse_registry_args(argc, argv, &a, history_usage)) < 0)
        return 2;
    if (argc - idx != 1) {
        fputs(history_usage, stderr);
        return 2;
    }
    if ((rc = registry_env_open(&e, a.config, a.data_dir)) != 0)
        return rc;
    if (a.format == NULL || strcmp(a.format, "text") == 0)
        printf("%-6s %-24s %-12s %-8s %-20s %-16s %s\n", "DEPLOY", "DEPLOYED AT", "VERSION",
               "ACTION", "ACTOR", "KEY", "SHA256");
    rc = jn_registry_history(e.registry, argv[idx], a.limit, print_history,
                             (void *)(a.format ? a.format : "text"), err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "junction: %s\n", err);
    registry_env_close(&e);
    return rc != 0 ? 1 : 0;
}

/* ---- signing ---- */

/* Options of keygen and sign. */
typedef struct {
    const char *key, *out;
} sign_args_t;

static const char keygen_usage[] =
    "usage: junction connector keygen [--out KEY.pem]\n"
    "  Writes an Ed25519 key pair: KEY.pem (the private key, mode 0600, never\n"
    "  overwritten) and KEY.pub (the public key: list it in connector_trusted_keys).\n"
    "  Default: connector-signing.pem in the current directory.\n";

static int keygen(int argc, char **argv)
{
    static const jn_cli_opt_t opts[] = {JN_CLI_STR(sign_args_t, "out", out), JN_CLI_END};
    sign_args_t a = {NULL, "connector-signing.pem"};
    const char *out;
    char pub[4096], key_id[JN_CONNSIG_KEY_ID_LEN + 1], err[512];
    size_t n;
    int first;

    if (wants_help(argc, argv)) {
        fputs(keygen_usage, stdout);
        return 0;
    }
    first = jn_cli_opts_parse(opts, argc, argv, &a, err, sizeof(err));
    if (first != argc) {
        jn_cli_opts_print_error(first, err);
        fputs(keygen_usage, stderr);
        return 2;
    }
    out = a.out;
    n = strlen(out);
    if (n > 4 && strcmp(out + n - 4, ".pem") == 0)
        snprintf(pub, sizeof(pub), "%.*s.pub", (int)(n - 4), out);
    else
        snprintf(pub, sizeof(pub), "%s.pub", out);
    if (jn_connsig_keygen(out, pub, key_id, err, sizeof(err)) != 0) {
        fprintf(stderr, "junction: keygen: %s\n", err);
        return 1;
    }
    printf("key %s\nprivate key: %s (keep it secret)\npublic key:  %s (add it to "
           "connector_trusted_keys)\n",
           key_id, out, pub);
    return 0;
}

static const char sign_usage[] =
    "usage: junction connector sign FILE --key KEY.pem [--out FILE.sig]\n"
    "  Writes the detached Ed25519 signature of FILE (default FILE.sig).\n";

static int sign(int argc, char **argv)
{
    static const jn_cli_opt_t opts[] = {JN_CLI_STR(sign_args_t, "key", key),
                                        JN_CLI_STR(sign_args_t, "out", out), JN_CLI_END};
    sign_args_t a = {NULL, NULL};
    const char *key, *out;
    char sigpath[4096], key_id[JN_CONNSIG_KEY_ID_LEN + 1], err[512], *src, *doc = NULL;
    size_t len = 0;
    int first, rc;

    if (wants_help(argc, argv)) {
        fputs(sign_usage, stdout);
        return 0;
    }
    first = jn_cli_opts_parse(opts, argc, argv, &a, err, sizeof(err));
    if (first < 0)
        jn_cli_opts_print_error(first, err);
    if (first != argc - 1 || a.key == NULL) {
        fputs(sign_usage, stderr);
        return 2;
    }
    key = a.key;
    out = a.out;
    src = jn_connector_read_file(argv[first], &len, err, sizeof(err));
    if (src == NULL) {
        fprintf(stderr, "junction: %s: %s\n", argv[first], err);
        return 1;
    }
    if (out == NULL) {
        snprintf(sigpath, sizeof(sigpath), "%s.sig", argv[first]);
        out = sigpath;
    }
    rc = jn_connsig_sign(key, src, len, &doc, key_id, err, sizeof(err));
    if (rc == 0)
        rc = write_file(out, doc, strlen(doc), 0644, err, sizeof(err));
    free(src);
    free(doc);
    if (rc != 0) {
        fprintf(stderr, "junction: sign: %s\n", err);
        return 1;
    }
    printf("%s: signed with key %s -> %s\n", argv[first], key_id, out);
    return 0;
}

/* ---- new: the scaffold ---- */

static const char new_usage[] =
    "usage: junction connector new NAME [options]\n"
    "  Writes DIR/NAME.lua (metadata and the functions of the chosen capabilities),\n"
    "  DIR/tests/NAME_spec.lua and the folder DIR/tests/fixtures/NAME/.\n"
    "  --dir DIR               where (default connectors)\n"
    "  --capabilities LIST     comma-separated: evidence_collection (default),\n"
    "                          webhook_receiver, bidirectional, streaming\n"
    "  --auth-type TYPE        api_key (default), oauth2, basic, ... (docs/lua-api.md)\n"
    "  --egress HOST           the API host (default api.NAME.example)\n"
    "  --force                 overwrite existing files\n";

static const char *const kit_capabilities[] = {"evidence_collection", "webhook_receiver",
                                               "bidirectional", "streaming", NULL};

typedef struct {
    const char *name, *dir, *auth_type, *egress, *caps_text;
    unsigned caps; /* bit i: kit_capabilities[i] */
    int force;
} new_args_t;

static int has_cap(const new_args_t *a, const char *cap)
{
    int i;

    for (i = 0; kit_capabilities[i]; i++)
        if (strcmp(kit_capabilities[i], cap) == 0)
            return (a->caps >> i) & 1;
    return 0;
}

static int parse_capabilities(const char *list, unsigned *caps, char *err, size_t errlen)
{
    char buf[512], *tok, *save = NULL;
    int i;

    *caps = 0;
    snprintf(buf, sizeof(buf), "%s", list);
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        for (i = 0; kit_capabilities[i]; i++)
            if (strcmp(kit_capabilities[i], tok) == 0)
                break;
        if (kit_capabilities[i] == NULL)
            return jn_errorf(err, errlen,
                             "--capabilities: unknown capability '%s' (evidence_collection, "
                             "webhook_receiver, bidirectional, streaming)",
                             tok);
        *caps |= 1u << i;
    }
    if (*caps == 0)
        return jn_errorf(err, errlen, "--capabilities: give at least one capability");
    return 0;
}

static int valid_name(const char *s)
{
    size_t n = strlen(s), i;

    if (n < 2 || n > 64 || !islower((unsigned char)s[0]))
        return 0;
    for (i = 0; i < n; i++)
        if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) && s[i] != '_')
            return 0;
    return 1;
}

static void scaffold_connector(const new_args_t *a, jn_buf_t *b)
{
    char line[1024], display[72];
    int i, first = 1;

    snprintf(display, sizeof(display), "%s", a->name);
    display[0] = (char)toupper((unsigned char)display[0]);
    snprintf(line, sizeof(line),
             "-- %s: compliance evidence from the %s API.\n"
             "--\n"
             "-- config (the integration's, also collect_evidence's argument):\n"
             "--   base_url   API root (default https://%s)\n"
             "--\n"
             "-- Scaffold written by `junction connector new`: replace the endpoints and the\n"
             "-- evidence with the provider's, then record fixtures and test it:\n"
             "--   junction connector test connectors/%s.lua --record --config '{...}'\n"
             "--   junction connector test connectors/%s.lua\n\n",
             display, display, a->egress, a->name, a->name);
    jn_buf_puts(b, line);
    jn_buf_puts(b, "local ipairs, tostring, type, error = ipairs, tostring, type, error\n\n"
                   "local c = connector {\n");
    snprintf(line, sizeof(line),
             "  provider_type = \"%s\",\n"
             "  display_name = \"%s\",\n"
             "  description = \"What %s holds that compliance needs (describe the evidence).\",\n"
             "  version = \"0.1.0\",\n"
             "  auth_types = { \"%s\" },\n"
             "  capabilities = { ",
             a->name, display, display, a->auth_type);
    jn_buf_puts(b, line);
    for (i = 0; kit_capabilities[i]; i++) {
        if (!((a->caps >> i) & 1))
            continue;
        jn_buf_puts(b, first ? "\"" : ", \"");
        jn_buf_puts(b, kit_capabilities[i]);
        jn_buf_puts(b, "\"");
        first = 0;
    }
    snprintf(line, sizeof(line),
             " },\n"
             "  -- the provider's documented limits; the core enforces them\n"
             "  rate_limits = { requests_per_second = 5, burst_size = 10 },\n"
             "  egress = { \"%s\" }, -- the only hosts the connector may call\n",
             a->egress);
    jn_buf_puts(b, line);
    if (has_cap(a, "webhook_receiver"))
        jn_buf_puts(b, "  -- verified in C before any Lua runs (docs/lua-api.md, Webhook "
                       "verification schemes)\n"
                       "  webhook = { scheme = \"standard_webhooks\" },\n"
                       "  webhook_events = { \"item.created\", \"item.updated\" },\n");
    snprintf(line, sizeof(line),
             "  documentation_url = \"https://%s/docs\",\n"
             "}\n\n"
             "local DEFAULT_BASE_URL = \"https://%s\"\n\n"
             "-- The API root from the config, without a trailing slash.\n"
             "local function base_url(config)\n"
             "  local url = type(config) == \"table\" and config.base_url or DEFAULT_BASE_URL\n"
             "  if type(url) ~= \"string\" or not url:match(\"^https?://\") then\n"
             "    return nil, \"config.base_url must be an http(s) URL, got \" .. tostring(url)\n"
             "  end\n"
             "  return (url:gsub(\"/+$\", \"\"))\n"
             "end\n\n",
             a->egress, a->egress);
    jn_buf_puts(b, line);
    jn_buf_puts(b, "-- Returns { success = true|false, message = ... }; never raises for a\n"
                   "-- provider's answer.\n"
                   "function c.test_connection(ctx)\n"
                   "  local base, err = base_url(ctx.config)\n"
                   "  if not base then return { success = false, message = err } end\n"
                   "  local me, gerr = ctx.http.get_json(base .. \"/me\")\n"
                   "  if not me then return { success = false, message = gerr } end\n"
                   "  return { success = true, message = \"connected as \" .. "
                   "tostring(me.account) }\n"
                   "end\n");
    if (has_cap(a, "evidence_collection")) {
        snprintf(line, sizeof(line),
                 "\n-- One evidence item per item of the listing; the checkpoint makes the next\n"
                 "-- run incremental once the API supports it.\n"
                 "function c.collect_evidence(ctx, config)\n"
                 "  local base, err = base_url(config or ctx.config)\n"
                 "  if not base then error(err, 0) end\n"
                 "  local body, gerr = ctx.http.get_json(base .. \"/items\")\n"
                 "  if not body then error(gerr, 0) end\n"
                 "  local items = body.items or body\n"
                 "  for _, item in ipairs(items) do\n"
                 "    ctx.emit{ resource_type = \"%s.item\", resource_id = tostring(item.id), "
                 "data = item }\n"
                 "  end\n"
                 "  ctx.checkpoint.set{ collected_at = ctx.isotime() }\n"
                 "  ctx.log.info(\"items collected\", { count = #items })\n"
                 "end\n",
                 a->name);
        jn_buf_puts(b, line);
    }
    if (has_cap(a, "webhook_receiver")) {
        snprintf(line, sizeof(line),
                 "\n-- A delivery already verified by the core (webhook.scheme).\n"
                 "function c.handle_webhook(ctx, event)\n"
                 "  if type(event) ~= \"table\" or event.id == nil then\n"
                 "    return nil, \"the delivery has no id\"\n"
                 "  end\n"
                 "  ctx.emit{ resource_type = \"%s.event\", resource_id = tostring(event.id), "
                 "data = event }\n"
                 "  return { accepted = true }\n"
                 "end\n",
                 a->name);
        jn_buf_puts(b, line);
    }
    if (has_cap(a, "bidirectional"))
        jn_buf_puts(b, "\n-- Writes back; idempotent where the API allows it.\n"
                       "function c.execute_action(ctx, action, params)\n"
                       "  if action ~= \"create_item\" then\n"
                       "    return nil, \"unknown action '\" .. tostring(action) .. \"' "
                       "(create_item)\"\n"
                       "  end\n"
                       "  local base, err = base_url(ctx.config)\n"
                       "  if not base then return nil, err end\n"
                       "  local res, perr = ctx.http.post(base .. \"/items\", { json = params or "
                       "{} })\n"
                       "  if not res then return nil, perr end\n"
                       "  if not res.ok then return nil, \"POST /items: HTTP \" .. res.status end\n"
                       "  return res:json()\n"
                       "end\n");
    if (has_cap(a, "streaming")) {
        snprintf(line, sizeof(line),
                 "\n-- Long-lived: one batch of events after `cursor`; returns the next cursor\n"
                 "-- (the runtime calls it again).\n"
                 "function c.stream(ctx, cursor)\n"
                 "  local base, err = base_url(ctx.config)\n"
                 "  if not base then error(err, 0) end\n"
                 "  local body, gerr = ctx.http.get_json(base .. \"/events\", { query = { after "
                 "= cursor or \"\" } })\n"
                 "  if not body then error(gerr, 0) end\n"
                 "  for _, ev in ipairs(body.events or {}) do\n"
                 "    ctx.emit{ resource_type = \"%s.event\", resource_id = tostring(ev.id), "
                 "data = ev }\n"
                 "  end\n"
                 "  return body.next or cursor\n"
                 "end\n",
                 a->name);
        jn_buf_puts(b, line);
    }
    jn_buf_puts(b, "\nreturn c\n");
}

static void scaffold_spec(const new_args_t *a, jn_buf_t *b)
{
    char line[2048];

    snprintf(line, sizeof(line),
             "-- Specs of %s/%s.lua, run inside the runtime by\n"
             "--   junction connector test %s/%s.lua            (offline: replays the exchanges "
             "in\n"
             "--                                                 tests/fixtures/%s/)\n"
             "--   junction connector test %s/%s.lua --record   (records them against the "
             "provider\n"
             "--                                                 or a simulator, redacted)\n"
             "-- and before every `junction connector deploy`.\n"
             "local T = require \"junction.testing\"\n"
             "local kit = assert(T.kit(), \"run this spec with `junction connector test "
             "%s/%s.lua`\")\n\n"
             "describe(\"%s connector\", function()\n"
             "  it(\"declares valid metadata\", function()\n"
             "    local ok, errors, meta = T.validate(kit.file)\n"
             "    assert.is_true(ok, errors)\n"
             "    assert.are.equal(\"%s\", meta.provider_type)\n"
             "  end)\n\n"
             "  it(\"tests the connection\", function()\n"
             "    local r = T.run{ kit = true, entry = \"test_connection\" }\n"
             "    assert.are.equal(\"succeeded\", r.status, r.error)\n"
             "    assert.is_true(r.result.success, r.result.message)\n"
             "  end)\n",
             a->dir, a->name, a->dir, a->name, a->name, a->dir, a->name, a->dir, a->name, a->name,
             a->name);
    jn_buf_puts(b, line);
    if (has_cap(a, "evidence_collection")) {
        snprintf(line, sizeof(line),
                 "\n  it(\"collects evidence\", function()\n"
                 "    local r = T.run{ kit = true, entry = \"collect_evidence\" }\n"
                 "    assert.are.equal(\"succeeded\", r.status, r.error)\n"
                 "    assert.is_true(r.item_count > 0, \"no evidence emitted\")\n"
                 "    for _, item in ipairs(r.items) do\n"
                 "      assert.are.equal(\"%s.item\", item.resource_type)\n"
                 "    end\n"
                 "  end)\n",
                 a->name);
        jn_buf_puts(b, line);
    }
    if (has_cap(a, "webhook_receiver"))
        jn_buf_puts(b, "\n  it(\"handles a webhook delivery\", function()\n"
                       "    local r = T.run{ kit = true, entry = \"handle_webhook\",\n"
                       "                     args = { { id = \"evt-1\", type = \"item.created\" } "
                       "} }\n"
                       "    assert.are.equal(\"succeeded\", r.status, r.error)\n"
                       "    assert.are.equal(1, r.item_count)\n"
                       "  end)\n");
    if (has_cap(a, "bidirectional"))
        jn_buf_puts(b, "\n  it(\"creates an item\", function()\n"
                       "    local r = T.run{ kit = true, entry = \"execute_action\",\n"
                       "                     args = { \"create_item\", { name = \"from-spec\" } } "
                       "}\n"
                       "    assert.are.equal(\"succeeded\", r.status, r.error)\n"
                       "    assert.is_not_nil(r.result)\n"
                       "  end)\n");
    if (has_cap(a, "streaming"))
        jn_buf_puts(b, "\n  it(\"streams a batch of events\", function()\n"
                       "    local r = T.run{ kit = true, entry = \"stream\", args = { \"\" } }\n"
                       "    assert.are.equal(\"succeeded\", r.status, r.error)\n"
                       "  end)\n");
    jn_buf_puts(b, "end)\n");
}

static int new_connector(int argc, char **argv)
{
    static const jn_cli_opt_t opts[] = {JN_CLI_STR(new_args_t, "dir", dir),
                                        JN_CLI_STR(new_args_t, "capabilities", caps_text),
                                        JN_CLI_STR(new_args_t, "auth-type", auth_type),
                                        JN_CLI_STR(new_args_t, "egress", egress),
                                        JN_CLI_FLAG(new_args_t, "force", force),
                                        JN_CLI_END};
    char file[4096], spec[4096], fixtures[4096], tests[4200], egress[128], err[4096], *errors;
    jn_buf_t src = {0}, specsrc = {0};
    new_args_t a = {0};
    jn_connector_t *c;
    int first, rc = 1;

    if (wants_help(argc, argv)) {
        fputs(new_usage, stdout);
        return 0;
    }
    a.dir = "connectors";
    a.auth_type = "api_key";
    a.caps = 1; /* evidence_collection */
    first = jn_cli_opts_parse(opts, argc, argv, &a, err, sizeof(err));
    if (first < 0) {
        jn_cli_opts_print_error(first, err);
        fputs(new_usage, stderr);
        return 2;
    }
    if (a.caps_text != NULL && parse_capabilities(a.caps_text, &a.caps, err, sizeof(err)) != 0) {
        fprintf(stderr, "junction: %s\n", err);
        return 2;
    }
    if (first != argc - 1) {
        fputs(new_usage, stderr);
        return 2;
    }
    a.name = argv[first];
    if (!valid_name(a.name)) {
        fprintf(stderr,
                "junction: connector name '%s': expected a lower-case identifier "
                "([a-z][a-z0-9_]*, 2 to 64 characters): it becomes provider_type\n",
                a.name);
        return 2;
    }
    if (a.egress == NULL) {
        snprintf(egress, sizeof(egress), "api.%s.example", a.name);
        for (char *p = egress; *p; p++)
            if (*p == '_')
                *p = '-';
        a.egress = egress;
    }
    scaffold_connector(&a, &src);
    scaffold_spec(&a, &specsrc);
    snprintf(file, sizeof(file), "%s/%s.lua", a.dir, a.name);
    /* what is written must pass the loader: an unknown auth type or a bad
     * host is refused here, with the loader's words */
    c = jn_connector_load_source(file, src.data, src.len, &errors);
    if (c == NULL) {
        fprintf(stderr, "junction: the scaffold would not validate:\n%s", errors ? errors : "");
        free(errors);
        rc = 2;
        goto done;
    }
    jn_connector_unref(c);
    jn_kit_paths(file, spec, sizeof(spec), fixtures, sizeof(fixtures));
    if (!a.force && (access(file, F_OK) == 0 || access(spec, F_OK) == 0)) {
        fprintf(stderr, "junction: %s or %s exists already (--force overwrites)\n", file, spec);
        rc = 1;
        goto done;
    }
    snprintf(tests, sizeof(tests), "%s/tests", a.dir);
    if (jn_mkdir_p(a.dir) != 0 || jn_mkdir_p(tests) != 0 || jn_mkdir_p(fixtures) != 0) {
        fprintf(stderr, "junction: cannot create '%s': %s\n", fixtures, strerror(errno));
        goto done;
    }
    chmod(a.dir, 0755);
    chmod(tests, 0755);
    if (write_file(file, src.data, src.len, 0644, err, sizeof(err)) != 0 ||
        write_file(spec, specsrc.data, specsrc.len, 0644, err, sizeof(err)) != 0) {
        fprintf(stderr, "junction: %s\n", err);
        goto done;
    }
    printf("wrote %s\nwrote %s\ncreated %s/\n"
           "next: edit the endpoints, then record fixtures against the provider (or a "
           "simulator):\n"
           "  junction connector test %s --record --config '{\"base_url\": \"https://%s\"}' "
           "--token-env TOKEN_VAR\n",
           file, spec, fixtures, file, a.egress);
    rc = 0;
done:
    jn_buf_free(&src);
    jn_buf_free(&specsrc);
    return rc;
}

/* ---- test: record and replay ---- */

static const char test_usage[] =
    "usage: junction connector test FILE [options]\n"
    "  Runs DIR/tests/NAME_spec.lua inside the runtime. By default offline: every\n"
    "  ctx.http call is answered from the exchanges recorded in DIR/tests/fixtures/NAME/\n"
    "  (an unrecorded request fails and is reported). With --record the connector\n"
    "  talks to the provider (or a simulator) and every exchange is saved there,\n"
    "  credentials and secret-shaped values redacted.\n"
    "  --record               record the fixtures (the old exchanges are removed first)\n"
    "  --config JSON          the connector's config (ctx.config), a JSON object or @FILE;\n"
    "                         saved with a recording, read back for replay\n"
    "  --allow-host HOST      record: let the connector reach HOST (host or host:port)\n"
    "                         although it is loopback or private (a simulator); repeatable\n"
    "  --token-file FILE      record: credential sent as 'Authorization: <scheme> <token>'\n"
    "  --token-env VAR        record: the same, from an environment variable\n"
    "  --auth-scheme WORD     Bearer (default), token, SSWS, ...\n"
    "  --credential-file FILE record: a credential document (JSON, as `creds put` takes)\n"
    "  --credential-type TYPE its auth type (oauth2, github_app, aws_sigv4, ...)\n"
    "  --spec FILE            another spec file\n"
    "  --fixtures DIR         another fixtures directory\n";

#define TEST_MAX_ALLOW 32

typedef struct {
    int record;
    const char *config, *token_file, *token_env, *scheme, *cred_file, *cred_type, *spec, *fixtures;
    const char *allow[TEST_MAX_ALLOW];
    int nallow;
} test_args_t;

static int parse_test_args(int argc, char **argv, test_args_t *a)
{
    static const jn_cli_opt_t opts[] = {
        JN_CLI_FLAG(test_args_t, "record", record),
        JN_CLI_STR(test_args_t, "config", config),
        JN_CLI_LIST(test_args_t, "allow-host", allow, nallow, TEST_MAX_ALLOW),
        JN_CLI_STR(test_args_t, "token-file", token_file),
        JN_CLI_STR(test_args_t, "token-env", token_env),
        JN_CLI_STR(test_args_t, "auth-scheme", scheme),
        JN_CLI_STR(test_args_t, "credential-file", cred_file),
        JN_CLI_STR(test_args_t, "credential-type", cred_type),
        JN_CLI_STR(test_args_t, "spec", spec),
        JN_CLI_STR(test_args_t, "fixtures", fixtures),
        JN_CLI_END};
    char err[512];
    int first;

    memset(a, 0, sizeof(*a));
    first = jn_cli_opts_parse(opts, argc, argv, a, err, sizeof(err));
    jn_cli_opts_print_error(first, err);
    if (first == JN_CLI_OPTS_INVALID)
        return -1;
    if (first != argc - 1) {
        fputs(test_usage, stderr);
        return -1;
    }
    return first;
}

/* The connector config: JSON object text, from --config (text or @FILE),
 * or for a replay the recorded config.json, or {}. malloc'ed; NULL after
 * printing why. */
static char *test_config(const test_args_t *a, const char *fixtures)
{
    char path[4200], why[300], *text = NULL;
    jn_json_t *root = NULL;
    jn_json_error_t jerr;
    size_t len = 0;

    if (a->config != NULL && a->config[0] == '@') {
        text = jn_connector_read_file(a->config + 1, &len, why, sizeof(why));
        if (text == NULL) {
            fprintf(stderr, "junction: --config %s: %s\n", a->config, why);
            return NULL;
        }
    } else if (a->config != NULL) {
        text = strdup(a->config);
    } else {
        snprintf(path, sizeof(path), "%s/config.json", fixtures);
        if (!a->record && access(path, F_OK) == 0) {
            text = jn_connector_read_file(path, &len, why, sizeof(why));
            if (text == NULL) {
                fprintf(stderr, "junction: %s: %s\n", path, why);
                return NULL;
            }
        } else {
            text = strdup("{}");
        }
    }
    if (text == NULL)
        return NULL;
    if (jn_json_parse(text, strlen(text), NULL, &root, &jerr) != 0 || !jn_json_is_object(root)) {
        fprintf(stderr, "junction: the connector config must be a JSON object%s%s\n",
                root ? "" : ": ", root ? "" : jerr.message);
        jn_json_free(root);
        free(text);
        return NULL;
    }
    jn_json_free(root);
    return text;
}

static int test_connector(int argc, char **argv)
{
    char spec[4096], fixtures[4096], path[4200], why[512], *errors = NULL, *config = NULL;
    char *auth = NULL, *cred = NULL;
    jn_kit_t kit = {0};
    jn_connector_t *c;
    test_args_t a;
    size_t cred_len = 0;
    int idx, rc = 2;

    if (wants_help(argc, argv)) {
        fputs(test_usage, stdout);
        return 0;
    }
    if ((idx = parse_test_args(argc, argv, &a)) < 0)
        return 2;
    if ((a.token_file || a.token_env) && a.cred_file) {
        fprintf(stderr, "junction: --credential-file excludes --token-file and --token-env\n");
        return 2;
    }
    if (a.cred_file && a.cred_type == NULL) {
        fprintf(stderr, "junction: --credential-file needs --credential-type\n");
        return 2;
    }
    if (!a.record && (a.token_file || a.token_env || a.cred_file || a.nallow))
        fprintf(stderr, "junction: note: a replay sends nothing; the credential and "
                        "--allow-host options only apply with --record\n");
    c = jn_connector_load_file(argv[idx], &errors);
    if (c == NULL) {
        fputs(errors ? errors : "out of memory\n", stderr);
        free(errors);
        return 1;
    }
    jn_connector_unref(c);
    if (jn_kit_paths(argv[idx], spec, sizeof(spec), fixtures, sizeof(fixtures)) != 0) {
        fprintf(stderr, "junction: path too long\n");
        return 2;
    }
    kit.spec = a.spec ? a.spec : spec;
    kit.fixtures = a.fixtures ? a.fixtures : fixtures;
    if (access(kit.spec, R_OK) != 0) {
        fprintf(stderr,
                "junction: no spec '%s' (`junction connector new` writes one; --spec names "
                "another)\n",
                kit.spec);
        return 2;
    }
    if ((config = test_config(&a, kit.fixtures)) == NULL)
        return 2;
    if (a.record) {
        if ((a.token_file || a.token_env) &&
            (auth = jn_cli_auth_header(a.token_file, a.token_env,
                                       a.scheme ? a.scheme : "Bearer")) == NULL)
            goto out;
        if (a.cred_file) {
            cred = jn_connector_read_file(a.cred_file, &cred_len, why, sizeof(why));
            if (cred == NULL) {
                fprintf(stderr, "junction: %s: %s\n", a.cred_file, why);
                goto out;
            }
        }
        if (jn_mkdir_p(kit.fixtures) != 0 || jn_fixtures_clear(kit.fixtures, why, sizeof(why))) {
            fprintf(stderr, "junction: fixtures '%s': %s\n", kit.fixtures,
                    why[0] ? why : strerror(errno));
            goto out;
        }
        snprintf(path, sizeof(path), "%s/config.json", kit.fixtures);
        if (write_file(path, config, strlen(config), 0644, why, sizeof(why)) != 0) {
            fprintf(stderr, "junction: %s\n", why);
            goto out;
        }
    } else {
        jn_fixtures_t *f = jn_fixtures_replay(NULL, kit.fixtures, why, sizeof(why));
        if (f == NULL || jn_fixtures_count(f) == 0)
            fprintf(stderr,
                    "junction: note: no recorded exchanges in '%s': every ctx.http call fails "
                    "(record them with --record)\n",
                    kit.fixtures);
        jn_fixtures_destroy(f);
    }
    kit.file = argv[idx];
    kit.record = a.record;
    kit.config_json = config;
    kit.allow_hosts = a.allow;
    kit.nallow_hosts = (size_t)a.nallow;
    kit.auth_header = auth;
    kit.credential_type = a.cred_type;
    kit.credential_doc = cred;
    kit.credential_len = cred_len;
    rc = jn_spec_run_kit(&kit) == 0 ? 0 : 1;
    if (a.record) {
        jn_fixtures_t *f = jn_fixtures_replay(NULL, kit.fixtures, why, sizeof(why));
        printf("%s: %zu exchanges recorded\n", kit.fixtures, f ? jn_fixtures_count(f) : 0);
        jn_fixtures_destroy(f);
    }
out:
    if (auth) {
        memset(auth, 0, strlen(auth));
        free(auth);
    }
    if (cred) {
        memset(cred, 0, cred_len);
        free(cred);
    }
    free(config);
    return rc;
}

int jn_cli_connector(int argc, char **argv)
{
    const char *cmd = argc >= 2 ? argv[1] : NULL;

    if (cmd == NULL || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
        strcmp(cmd, "help") == 0) {
        fputs(connector_usage, cmd ? stdout : stderr);
        return cmd ? 0 : 2;
    }
    if (strcmp(cmd, "validate") == 0)
        return validate(argc - 2, argv + 2);
    if (strcmp(cmd, "deploy") == 0)
        return deploy(argc - 1, argv + 1);
    if (strcmp(cmd, "rollback") == 0)
        return rollback(argc - 1, argv + 1);
    if (strcmp(cmd, "history") == 0)
        return history(argc - 1, argv + 1);
    if (strcmp(cmd, "keygen") == 0)
        return keygen(argc - 1, argv + 1);
    if (strcmp(cmd, "sign") == 0)
        return sign(argc - 1, argv + 1);
    if (strcmp(cmd, "new") == 0)
        return new_connector(argc - 1, argv + 1);
    if (strcmp(cmd, "test") == 0)
        return test_connector(argc - 1, argv + 1);
    fprintf(stderr, "junction: unknown connector command '%s'\n\n%s", cmd, connector_usage);
    return 2;
}
