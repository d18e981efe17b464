/* junction creds / keys / audit: the credential vault from the command line.
 *
 * Every command opens the store in data_dir (--config FILE or JUNCTION_* as
 * the other commands) and, except audit verify, the vault with the key
 * provider the environment names (JUNCTION_MASTER_KEY_FILE or
 * JUNCTION_MASTER_KEY). Output is one JSON line per result on stdout;
 * messages go to stderr. Nothing printed ever holds a secret: credential
 * documents are read from files, validated, encrypted and only their field
 * names are kept in the (plaintext) metadata.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "job.h"
#include "json_canon.h"
#include "junction/audit.h"
#include "junction/log.h"
#include "junction/redact.h"
#include "junction/secmem.h"
#include "runtime.h"

#define ACTOR "cli"

static const char creds_usage[] =
    "usage: junction creds <command> [options]\n"
    "  put    --org ORG --provider PROVIDER --auth-type TYPE --from-file FILE.json\n"
    "         [--label TEXT]       store a credential; prints its id and metadata\n"
    "  list   --org ORG            one JSON line per credential (metadata, versions)\n"
    "  rotate --org ORG --id ID --from-file FILE.json [--label TEXT]\n"
    "         [--connector FILE [--config JSON] [--allow-host HOST]...] | [--promote]\n"
    "                              store a new version as pending; with --connector it\n"
    "                              is tested (test_connection) and promoted on success,\n"
    "                              discarded on failure; --promote promotes it untested\n"
    "  rotate --org ORG --id ID --promote | --discard\n"
    "                              promote or discard the pending version\n"
    "  rm     --org ORG --id ID    delete every version of a credential\n"
    "common options:\n"
    "  --config-file FILE          runtime config file (data_dir, ...); for every command\n"
    "                              but rotate, --config FILE means the same\n"
    "  --data-dir DIR              the store's directory (overrides data_dir)\n"
    "The master key comes from JUNCTION_MASTER_KEY_FILE (a 0600 file of lines\n"
    "'<key-id> <base64 of 32 bytes>', the last one current) or JUNCTION_MASTER_KEY.\n"
    "Credential documents (JSON) by auth type:\n"
    "  api_key    {\"token\": \"...\", \"header\": \"Authorization\", \"prefix\": \"Bearer\"}\n"
    "  basic      {\"username\": \"...\", \"password\": \"...\"}\n"
    "  aws_sigv4  {\"access_key_id\": \"...\", \"secret_access_key\": \"...\", \"region\": "
    "\"...\",\n"
    "              \"service\": \"...\"}\n"
    "  oauth_client {\"client_id\": \"...\", \"client_secret\": \"...\", \"token_url\": \"...\"}\n"
    "             the organization's own OAuth client for PROVIDER (one per provider): the\n"
    "             oauth2 and client_credentials credentials of the organization that name\n"
    "             no client_id use it; in organization " JN_CLI_PLATFORM_ORG " it is the platform\n"
    "             default for organizations that have none\n";

static const char keys_usage[] =
    "usage: junction keys rotate [--org ORG] [--config FILE] [--data-dir DIR]\n"
    "  without --org: re-wrap every organization's data keys under the current master\n"
    "                 key (the last line of the key file: append a new key line first)\n"
    "  with --org:    new data key for ORG and re-encryption of its credentials\n"
    "Both are resumable: run the command again after an interruption.\n";

static const char audit_usage[] =
    "usage: junction audit verify [--anchor SEQ:HASH] [--config FILE] [--data-dir DIR]\n"
    "  verifies the hash chain of the audit log (and that it still contains the\n"
    "  anchor, a '<seq>:<hash>' kept elsewhere); exit 0 when intact, 1 when not.\n";

typedef struct {
    const char *config_file, *data_dir, *org, *provider, *auth_type, *from_file, *label, *id,
        *connector, *config_json, *anchor;
    const char *allow[64];
    int nallow;
    int promote, discard;
} creds_args_t;

/* ---- a minimal JSON scanner (top-level members only) --------------------- */

static const char *js_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p at '"': returns the position after the closing quote, NULL if malformed. */
static const char *js_string(const char *p, const char *end)
{
    if (p >= end || *p != '"')
        return NULL;
    for (p++; p < end; p++) {
        if (*p == '"')
            return p + 1;
        if ((unsigned char)*p < 0x20)
            return NULL;
        if (*p == '\\' && ++p >= end)
            return NULL;
    }
    return NULL;
}

static const char *js_value(const char *p, const char *end)
{
    int depth = 0;

    p = js_ws(p, end);
    if (p < end && *p == '"')
        return js_string(p, end);
    while (p < end) {
        if (*p == '"') {
            if ((p = js_string(p, end)) == NULL)
                return NULL;
            continue;
        }
        if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            if (depth == 0)
                return p;
            if (--depth == 0)
                return p + 1;
        } else if (depth == 0 &&
                   (*p == ',' || *p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) {
            return p;
        }
        p++;
    }
    return depth == 0 ? p : NULL;
}

/* Calls fn for each top-level member of an object: the key's raw (escaped)
 * text without quotes and the value's raw text. 0, or -1 if not an object. */
typedef int (*js_member_fn)(void *ud, const char *key, size_t klen, const char *val, size_t vlen);

static int js_members(const char *doc, size_t len, js_member_fn fn, void *ud)
{
    const char *p = doc, *end = doc + len, *k, *ke, *v, *ve;

    p = js_ws(p, end);
    if (p >= end || *p != '{')
        return -1;
    p = js_ws(p + 1, end);
    if (p < end && *p == '}')
        return js_ws(p + 1, end) == end ? 0 : -1;
    for (;;) {
        k = p;
        if ((ke = js_string(p, end)) == NULL)
            return -1;
        p = js_ws(ke, end);
        if (p >= end || *p != ':')
            return -1;
        v = js_ws(p + 1, end);
        if ((ve = js_value(v, end)) == NULL || ve == v)
            return -1;
        if (fn && fn(ud, k + 1, (size_t)(ke - k - 2), v, (size_t)(ve - v)) != 0)
            return 0;
        p = js_ws(ve, end);
        if (p < end && *p == ',') {
            p = js_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}')
            return js_ws(p + 1, end) == end ? 0 : -1;
        return -1;
    }
}

typedef struct {
    const char *key;
    const char *val;
    size_t vlen;
} js_find_t;

static int js_find_cb(void *ud, const char *key, size_t klen, const char *val, size_t vlen)
{
    js_find_t *f = ud;

    if (strlen(f->key) != klen || memcmp(f->key, key, klen) != 0)
        return 0;
    f->val = val;
    f->vlen = vlen;
    return 1;
}

/* The raw value of top-level member `key`, or NULL. */
static const char *js_get(const char *doc, const char *key, size_t *vlen)
{
    js_find_t f = {key, NULL, 0};

    if (doc == NULL || js_members(doc, strlen(doc), js_find_cb, &f) != 0)
        return NULL;
    *vlen = f.vlen;
    return f.val;
}

typedef struct {
    jn_buf_t *b;
    int n;
    int err;
} js_names_t;

static int js_names_cb(void *ud, const char *key, size_t klen, const char *val, size_t vlen)
{
    js_names_t *nm = ud;

    (void)val, (void)vlen;
    if ((nm->n++ && jn_buf_puts(nm->b, ",") != 0) || jn_buf_puts(nm->b, "\"") != 0 ||
        jn_buf_append(nm->b, key, klen) != 0 || jn_buf_puts(nm->b, "\"") != 0)
        nm->err = 1;
    return nm->err;
}

/* ---- helpers -------------------------------------------------------------- */

static int vault_exit(int rc)
{
    return rc == JN_VAULT_EINVAL || rc == JN_VAULT_ENOTFOUND ? 2 : 1;
}

static void print_line(jn_buf_t *b)
{
    /* belt and braces: nothing printed may hold a known secret */
    char *clean = jn_redactor_scrub(jn_redactor_global(), b->data ? b->data : "", b->len);

    fputs(clean ? clean : (b->data ? b->data : ""), stdout);
    fputc('\n', stdout);
    fflush(stdout);
    free(clean);
}

static int buf_str(jn_buf_t *b, const char *s)
{
    if (s == NULL)
        return jn_buf_puts(b, "null");
    return jn_json_append_string(b, s, strlen(s));
}

/* Reads a credential document into locked memory. The file must be a regular
 * file not readable by group or others. 0, or the exit code after printing. */
static int read_document(const char *path, char **doc, size_t *len)
{
    struct stat st;
    ssize_t n;
    size_t got = 0;
    int fd;

    *doc = NULL;
    *len = 0;
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "junction: cannot open credential file '%s': %s\n", path, strerror(errno));
        return 2;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "junction: credential file '%s' is not a regular file\n", path);
        close(fd);
        return 2;
    }
    if (st.st_mode & (S_IRGRP | S_IROTH | S_IWGRP | S_IWOTH)) {
        fprintf(stderr,
                "junction: credential file '%s' has mode %04o: other users can read or "
                "change it; run 'chmod 600 %s' (and consider where else it was copied)\n",
                path, (unsigned)(st.st_mode & 07777), path);
        close(fd);
        return 2;
    }
    if (st.st_size <= 0 || st.st_size > JN_VAULT_SECRET_MAX) {
        fprintf(stderr, "junction: credential file '%s' is %s (limit %d bytes)\n", path,
                st.st_size <= 0 ? "empty" : "too large", JN_VAULT_SECRET_MAX);
        close(fd);
        return 2;
    }
    *doc = jn_secmem_alloc((size_t)st.st_size + 1);
    if (*doc == NULL) {
        fprintf(stderr, "junction: out of memory\n");
        close(fd);
        return 1;
    }
    while (got < (size_t)st.st_size && (n = read(fd, *doc + got, (size_t)st.st_size - got)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "junction: cannot read credential file '%s': %s\n", path,
                    strerror(errno));
            jn_secmem_free(*doc);
            *doc = NULL;
            close(fd);
            return 2;
        }
        got += (size_t)n;
    }
    close(fd);
    (*doc)[got] = '\0';
    *len = got;
    return 0;
}

/* Validates the document for auth_type; 0 or the exit code after printing.
 * *wants_client (if given): 1 when it names no OAuth client (BYOC). */
static int validate_document(const char *auth_type, const char *doc, size_t len, const char *path,
                             int *wants_client)
{
    jn_auth_t *a = NULL;
    char err[512];

    if (js_members(doc, len, NULL, NULL) != 0) {
        fprintf(stderr, "junction: credential file '%s' is not a JSON object\n", path);
        return 2;
    }
    if (jn_auth_parse(auth_type, doc, len, &a, err, sizeof(err)) != 0) {
        char *clean = jn_redactor_scrub_dup(NULL, err, strlen(err));
        fprintf(stderr, "junction: credential file '%s' is not a valid %s credential: %s\n", path,
                auth_type, clean ? clean : "invalid");
        free(clean);
        return 2;
    }
    if (wants_client != NULL)
        *wants_client = jn_auth_wants_client(a);
    jn_auth_free(a);
    return 0;
}

/* {"provider":..,"auth_type":..,"label":..,"fields":[names]}; label_raw is an
 * already-encoded JSON value (kept from the previous metadata) or NULL. */
static int build_metadata(jn_buf_t *b, const char *provider, const char *auth_type,
                          const char *label, const char *label_raw, size_t label_raw_len,
                          const char *doc, size_t len)
{
    js_names_t nm = {b, 0, 0};

    if (jn_buf_puts(b, "{\"provider\":") != 0 || buf_str(b, provider) != 0 ||
        jn_buf_puts(b, ",\"auth_type\":") != 0 || buf_str(b, auth_type) != 0)
        return -1;
    if (label) {
        if (jn_buf_puts(b, ",\"label\":") != 0 || buf_str(b, label) != 0)
            return -1;
    } else if (label_raw) {
        if (jn_buf_puts(b, ",\"label\":") != 0 || jn_buf_append(b, label_raw, label_raw_len) != 0)
            return -1;
    }
    if (jn_buf_puts(b, ",\"fields\":[") != 0)
        return -1;
    if (js_members(doc, len, js_names_cb, &nm) != 0 || nm.err)
        return -1;
    return jn_buf_puts(b, "]}");
}

typedef struct {
    jn_config_t *cfg;
    jn_store_t *store;
    jn_keyprovider_t *kp;
    jn_vault_t *vault;
} env_t;

static void env_close(env_t *e)
{
    if (e->vault)
        jn_vault_destroy(e->vault);
    if (e->kp)
        jn_keyprovider_destroy(e->kp);
    if (e->store)
        jn_store_close(e->store);
    if (e->cfg)
        jn_config_destroy(e->cfg);
    memset(e, 0, sizeof(*e));
}

/* 0, or the exit code after printing. */
static int env_open(env_t *e, const creds_args_t *a, int with_vault, const jn_vault_opts_t *vopts)
{
    const char *dir;

    memset(e, 0, sizeof(*e));
    if ((e->cfg = jn_cli_load_config(a->config_file)) == NULL)
        return 2;
    dir = a->data_dir ? a->data_dir : jn_config_str(e->cfg, "data_dir");
    /* in the cluster the vault's keys, credentials and audit log are in Redis */
    if ((e->store = jn_cli_open_store(dir)) == NULL || jn_cli_cluster_store(e->store, e->cfg) < 0) {
        env_close(e);
        return 1;
    }
    if (with_vault && (e->vault = jn_cli_open_vault(e->store, vopts, &e->kp)) == NULL) {
        env_close(e);
        return 2;
    }
    return 0;
}

/* Both tables but for what --config means: for rotate the connector's JSON
 * config, elsewhere the runtime config file. */
#define CREDS_OPTS                                                                                 \
    JN_CLI_STR(creds_args_t, "config-file", config_file),                                          \
        JN_CLI_STR(creds_args_t, "data-dir", data_dir), JN_CLI_STR(creds_args_t, "org", org),      \
        JN_CLI_STR(creds_args_t, "provider", provider),                                            \
        JN_CLI_STR(creds_args_t, "auth-type", auth_type),                                          \
        JN_CLI_STR(creds_args_t, "from-file", from_file),                                          \
        JN_CLI_STR(creds_args_t, "label", label), JN_CLI_STR(creds_args_t, "id", id),              \
        JN_CLI_STR(creds_args_t, "connector", connector),                                          \
        JN_CLI_LIST(creds_args_t, "allow-host", allow, nallow, 64),                                \
        JN_CLI_STR(creds_args_t, "anchor", anchor), JN_CLI_FLAG(creds_args_t, "promote", promote), \
        JN_CLI_FLAG(creds_args_t, "discard", discard), JN_CLI_HELP, JN_CLI_END

static const jn_cli_opt_t rotate_opts[] = {JN_CLI_STR(creds_args_t, "config", config_json),
                                           CREDS_OPTS};
static const jn_cli_opt_t creds_opts[] = {JN_CLI_STR(creds_args_t, "config", config_file),
                                          CREDS_OPTS};

/* 0, 1 for --help, or -1 after printing why (the caller adds the usage). */
static int parse_args(int argc, char **argv, creds_args_t *a, int config_is_json)
{
    char err[512];
    int first = jn_cli_opts_parse(config_is_json ? rotate_opts : creds_opts, argc, argv, a, err,
                                  sizeof(err));

    if (first == JN_CLI_OPTS_HELP)
        return 1;
    if (first < 0)
        jn_cli_opts_print_error(first, err);
    return first == argc ? 0 : -1;
}

static int missing(const char *what, const char *usage)
{
    fprintf(stderr, "junction: %s is required\n\n%s", what, usage);
    return 2;
}

/* ---- BYOC: the OAuth client of a credential --------------------------------
 *
 * An oauth2 or client_credentials credential without client_id uses the
 * oauth_client credential of its organization for its provider, else the
 * platform default: the oauth_client for the provider in the reserved
 * organization JN_CLI_PLATFORM_ORG. One oauth_client per organization and
 * provider (creds put refuses a second one). */

typedef struct {
    const char *provider;
    char id[JN_CLI_ID_MAX + 1];
    int count;
} client_find_t;

static int client_find_cb(void *ud, const jn_credential_info_t *info)
{
    client_find_t *f = ud;

    if (info->state == NULL || strcmp(info->state, "current") != 0 || info->auth_type == NULL ||
        strcmp(info->auth_type, "oauth_client") != 0 || info->provider == NULL ||
        strcmp(info->provider, f->provider) != 0)
        return 0;
    if (f->count++ == 0)
        snprintf(f->id, sizeof(f->id), "%s", info->id);
    return 0;
}

/* The oauth_client credential of one organization for provider: 1 (its id
 * in id), 0 none, or a JN_VAULT_* code with err. */
static int org_client(jn_vault_t *v, const char *org, const char *provider,
                      char id[JN_CLI_ID_MAX + 1], char *err, size_t errlen)
{
    client_find_t f = {provider, "", 0};
    int rc = jn_vault_list(v, org, client_find_cb, &f);

    if (rc != 0) {
        snprintf(err, errlen, "%s", jn_vault_errmsg(v));
        return rc;
    }
    if (f.count > 1) {
        snprintf(err, errlen,
                 "organization '%s' has %d oauth_client credentials for provider '%s'; keep one "
                 "(junction creds rm --org %s --id ID)",
                 org, f.count, provider, org);
        return JN_VAULT_ESTATE;
    }
    memcpy(id, f.id, sizeof(f.id));
    return f.count;
}

int jn_cli_oauth_client_of(jn_vault_t *v, const char *org, const char *provider,
                           const char **client_org, char client_id[JN_CLI_ID_MAX + 1], char *err,
                           size_t errlen)
{
    int rc = org_client(v, org, provider, client_id, err, errlen);

    *client_org = org;
    if (rc == 0 && strcmp(org, JN_CLI_PLATFORM_ORG) != 0) {
        *client_org = JN_CLI_PLATFORM_ORG;
        rc = org_client(v, JN_CLI_PLATFORM_ORG, provider, client_id, err, errlen);
    }
    if (rc == 0)
        *client_org = NULL;
    return rc;
}

int jn_cli_bind_oauth_client(jn_vault_t *v, const char *org, const char *provider,
                             const char *credential_id, const char *requester, jn_auth_t *a,
                             char *err, size_t errlen)
{
    const char *corg = NULL;
    char cid[JN_CLI_ID_MAX + 1], who[256], detail[512], perr[512];
    jn_secret_t secret = {0};
    jn_auth_t *client = NULL;
    int64_t version = 0;
    int rc;

    if (!jn_auth_wants_client(a))
        return 0;
    rc = jn_cli_oauth_client_of(v, org, provider, &corg, cid, err, errlen);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        snprintf(err, errlen,
                 "credential '%s' (%s) names no OAuth client (no client_id), and there is none "
                 "to use: organization '%s' has no oauth_client credential for provider '%s', "
                 "nor is there a platform default (an oauth_client for '%s' in organization "
                 "'" JN_CLI_PLATFORM_ORG "'); store one with 'junction creds put --org %s "
                 "--provider %s --auth-type oauth_client --from-file FILE.json'",
                 credential_id, jn_auth_type(a), org, provider, provider, org, provider);
        return JN_VAULT_ENOTFOUND;
    }
    /* The client's access is audited in its own organization, naming whose
     * credential it serves. */
    snprintf(who, sizeof(who), "%.100s (oauth_client of %.60s/%.60s)", requester, org,
             credential_id);
    rc = jn_vault_get_version(v, corg, cid, 0, who, &secret, &version);
    if (rc != 0) {
        snprintf(err, errlen, "oauth_client '%s' of organization '%s': %s", cid, corg,
                 jn_vault_errmsg(v));
        return rc;
    }
    rc = jn_auth_parse("oauth_client", secret.data, secret.len, &client, perr, sizeof(perr));
    jn_secret_free(&secret);
    if (rc == 0)
        rc = jn_auth_bind_client(a, client, corg, cid, version, perr, sizeof(perr));
    jn_auth_free(client);
    if (rc != 0) {
        snprintf(err, errlen, "oauth_client '%s' of organization '%s' is not usable: %s", cid, corg,
                 perr);
        return JN_VAULT_EINVAL;
    }
    snprintf(detail, sizeof(detail),
             "{\"client_organization\":\"%s\",\"client_credential\":\"%s\",\"version\":%" PRId64
             "}",
             corg, cid, version);
    if (jn_vault_audit(v, org, credential_id, requester, "oauth_client.use", detail) != 0) {
        snprintf(err, errlen, "cannot audit the use of oauth_client '%s': %s", cid,
                 jn_vault_errmsg(v));
        return JN_VAULT_ERROR;
    }
    return 0;
}

/* ---- creds put ------------------------------------------------------------ */

/* One oauth_client per organization and provider; a credential that names
 * no client is stored, with a warning when there is no client to use yet.
 * 0, or the exit code after printing. */
static int check_client_put(jn_vault_t *v, const creds_args_t *a, int wants_client)
{
    char cid[JN_CLI_ID_MAX + 1], err[512];
    const char *corg = NULL;
    int rc;

    if (strcmp(a->auth_type, "oauth_client") == 0) {
        rc = org_client(v, a->org, a->provider, cid, err, sizeof(err));
        if (rc < 0) {
            fprintf(stderr, "junction: %s\n", err);
            return vault_exit(rc);
        }
        if (rc > 0) {
            fprintf(stderr,
                    "junction: organization '%s' already has an oauth_client for provider '%s' "
                    "(credential %s); replace its document with 'junction creds rotate --org %s "
                    "--id %s --from-file FILE.json --promote'\n",
                    a->org, a->provider, cid, a->org, cid);
            return 2;
        }
        return 0;
    }
    if (!wants_client)
        return 0;
    rc = jn_cli_oauth_client_of(v, a->org, a->provider, &corg, cid, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "junction: warning: %s\n", err);
    else if (rc == 0)
        fprintf(stderr,
                "junction: warning: this %s credential names no client_id: it uses the "
                "oauth_client of organization '%s' for provider '%s' (or the platform default), "
                "and there is none yet; its exchanges fail until one is stored\n",
                a->auth_type, a->org, a->provider);
    return 0;
}

static int creds_put(const creds_args_t *a)
{
    env_t e;
    jn_buf_t meta = {0}, out = {0};
    char *doc = NULL, id[JN_VAULT_ID_LEN];
    size_t len = 0;
    int rc, wants_client = 0;

    if (!a->org)
        return missing("--org ORG", creds_usage);
    if (!a->provider)
        return missing("--provider PROVIDER", creds_usage);
    if (!a->auth_type)
        return missing("--auth-type TYPE", creds_usage);
    if (!a->from_file)
        return missing("--from-file FILE.json", creds_usage);
    if (strcmp(a->org, JN_CLI_PLATFORM_ORG) == 0 && strcmp(a->auth_type, "oauth_client") != 0) {
        fprintf(stderr,
                "junction: organization '" JN_CLI_PLATFORM_ORG "' is reserved for the platform's "
                "default OAuth clients (auth type oauth_client)\n");
        return 2;
    }
    if ((rc = read_document(a->from_file, &doc, &len)) != 0)
        return rc;
    if ((rc = validate_document(a->auth_type, doc, len, a->from_file, &wants_client)) != 0)
        goto done;
    if (build_metadata(&meta, a->provider, a->auth_type, a->label, NULL, 0, doc, len) != 0) {
        fprintf(stderr, "junction: out of memory\n");
        rc = 1;
        goto done;
    }
    if ((rc = env_open(&e, a, 1, NULL)) != 0)
        goto done;
    if ((rc = check_client_put(e.vault, a, wants_client)) != 0) {
        env_close(&e);
        goto done;
    }
    rc = jn_vault_put(e.vault, a->org, a->provider, a->auth_type, doc, len, meta.data, ACTOR, id);
    if (rc != 0) {
        fprintf(stderr, "junction: cannot store the credential: %s\n", jn_vault_errmsg(e.vault));
        rc = vault_exit(rc);
    } else {
        jn_buf_puts(&out, "{\"id\":");
        buf_str(&out, id);
        jn_buf_puts(&out, ",\"organization_id\":");
        buf_str(&out, a->org);
        jn_buf_puts(&out, ",\"version\":1,\"state\":\"current\",\"metadata\":");
        jn_buf_append(&out, meta.data, meta.len);
        jn_buf_puts(&out, "}");
        print_line(&out);
    }
    env_close(&e);
done:
    jn_secmem_free(doc);
    jn_buf_free(&meta);
    jn_buf_free(&out);
    return rc;
}

/* ---- creds list ----------------------------------------------------------- */

typedef struct {
    jn_buf_t line;     /* the credential being assembled */
    jn_buf_t versions; /* its versions */
    char id[JN_CLI_ID_MAX + 1];
    char org[JN_CLI_ID_MAX + 1], provider[72], auth_type[72];
    char *metadata; /* of the current version (else the first seen) */
    int meta_current;
    int reauth; /* the current version needs re-authorization */
    int count;
    int err;
    jn_vault_t *vault;
} list_state_t;

/* ,"oauth_client":{...}: which OAuth client an oauth2 or client_credentials
 * credential uses: its own ("credential"), its organization's or the
 * platform's oauth_client for the provider (credential ids only), or none. */
static void list_client(list_state_t *st)
{
    char cid[JN_CLI_ID_MAX + 1], err[512];
    const char *fields, *corg = NULL;
    size_t vlen = 0;
    int rc;

    if (strcmp(st->auth_type, "oauth2") != 0 && strcmp(st->auth_type, "client_credentials") != 0)
        return;
    if ((fields = js_get(st->metadata, "fields", &vlen)) == NULL)
        return;
    jn_buf_puts(&st->line, ",\"oauth_client\":{\"source\":");
    if (memmem(fields, vlen, "\"client_id\"", 11) != NULL) {
        jn_buf_puts(&st->line, "\"credential\"}");
        return;
    }
    rc = jn_cli_oauth_client_of(st->vault, st->org, st->provider, &corg, cid, err, sizeof(err));
    if (rc > 0) {
        buf_str(&st->line, strcmp(corg, st->org) == 0 ? "organization" : "platform");
        jn_buf_puts(&st->line, ",\"organization_id\":");
        buf_str(&st->line, corg);
        jn_buf_puts(&st->line, ",\"id\":");
        buf_str(&st->line, cid);
    } else if (rc == 0) {
        jn_buf_puts(&st->line, "\"none\"");
    } else {
        jn_buf_puts(&st->line, "\"error\",\"error\":");
        buf_str(&st->line, err);
    }
    jn_buf_puts(&st->line, "}");
}

static void list_flush(list_state_t *st)
{
    if (st->id[0] == '\0')
        return;
    list_client(st);
    jn_buf_puts(&st->line, st->reauth ? ",\"needs_reauthorization\":true"
                                      : ",\"needs_reauthorization\":false");
    jn_buf_puts(&st->line, ",\"metadata\":");
    jn_buf_puts(&st->line, st->metadata ? st->metadata : "null");
    jn_buf_puts(&st->line, ",\"versions\":[");
    if (st->versions.len)
        jn_buf_append(&st->line, st->versions.data, st->versions.len);
    jn_buf_puts(&st->line, "]}");
    print_line(&st->line);
    st->count++;
    jn_buf_free(&st->line);
    jn_buf_free(&st->versions);
    free(st->metadata);
    st->metadata = NULL;
    st->meta_current = 0;
    st->reauth = 0;
    st->id[0] = '\0';
}

static int list_cb(void *ud, const jn_credential_info_t *info)
{
    list_state_t *st = ud;
    char num[160];
    int is_current = info->state && strcmp(info->state, "current") == 0;

    if (strcmp(st->id, info->id) != 0) {
        list_flush(st);
        snprintf(st->id, sizeof(st->id), "%s", info->id);
        snprintf(st->org, sizeof(st->org), "%s", info->org_id ? info->org_id : "");
        snprintf(st->provider, sizeof(st->provider), "%s", info->provider ? info->provider : "");
        snprintf(st->auth_type, sizeof(st->auth_type), "%s",
                 info->auth_type ? info->auth_type : "");
        jn_buf_puts(&st->line, "{\"id\":");
        buf_str(&st->line, info->id);
        jn_buf_puts(&st->line, ",\"organization_id\":");
        buf_str(&st->line, info->org_id);
        jn_buf_puts(&st->line, ",\"provider\":");
        buf_str(&st->line, info->provider);
        jn_buf_puts(&st->line, ",\"auth_type\":");
        buf_str(&st->line, info->auth_type);
    }
    if (info->metadata_json && (st->metadata == NULL || (is_current && !st->meta_current))) {
        free(st->metadata);
        st->metadata = strdup(info->metadata_json);
        st->meta_current = is_current;
    }
    if (st->versions.len)
        jn_buf_puts(&st->versions, ",");
    snprintf(num, sizeof(num), "{\"version\":%" PRId64 ",\"state\":", info->version);
    jn_buf_puts(&st->versions, num);
    buf_str(&st->versions, info->state);
    snprintf(num, sizeof(num),
             ",\"dek_version\":%" PRId64 ",\"created_ms\":%" PRId64 ",\"rotated_ms\":%" PRId64,
             info->dek_version, info->created_ms, info->rotated_ms);
    jn_buf_puts(&st->versions, num);
    if (info->reauth_ms != 0) {
        /* The provider refused this version's grant for good: it stays
         * unusable until a new version is stored. */
        snprintf(
            num, sizeof(num),
            ",\"needs_reauthorization\":{\"since_ms\":%" PRId64 ",\"reason\":", info->reauth_ms);
        jn_buf_puts(&st->versions, num);
        buf_str(&st->versions, info->reauth_reason ? info->reauth_reason : "");
        jn_buf_puts(&st->versions, "}");
        st->reauth |= is_current;
    }
    jn_buf_puts(&st->versions, "}");
    return 0;
}

static int creds_list(const creds_args_t *a)
{
    env_t e;
    list_state_t st;
    int rc;

    if (!a->org)
        return missing("--org ORG", creds_usage);
    if ((rc = env_open(&e, a, 1, NULL)) != 0)
        return rc;
    memset(&st, 0, sizeof(st));
    st.vault = e.vault;
    rc = jn_vault_list(e.vault, a->org, list_cb, &st);
    if (rc == 0)
        list_flush(&st);
    jn_buf_free(&st.line);
    jn_buf_free(&st.versions);
    free(st.metadata);
    if (rc != 0) {
        fprintf(stderr, "junction: cannot list credentials: %s\n", jn_vault_errmsg(e.vault));
        rc = vault_exit(rc);
    } else if (st.count == 0) {
        fprintf(stderr, "junction: no credentials in organization '%s'\n", a->org);
    }
    env_close(&e);
    return rc;
}

/* ---- creds rm ------------------------------------------------------------- */

static int creds_rm(const creds_args_t *a)
{
    env_t e;
    jn_buf_t out = {0};
    int rc;

    if (!a->org)
        return missing("--org ORG", creds_usage);
    if (!a->id)
        return missing("--id ID", creds_usage);
    if ((rc = env_open(&e, a, 1, NULL)) != 0)
        return rc;
    rc = jn_vault_delete(e.vault, a->org, a->id, ACTOR);
    if (rc != 0) {
        fprintf(stderr, "junction: cannot delete credential '%s': %s\n", a->id,
                jn_vault_errmsg(e.vault));
        rc = vault_exit(rc);
    } else {
        jn_buf_puts(&out, "{\"id\":");
        buf_str(&out, a->id);
        jn_buf_puts(&out, ",\"organization_id\":");
        buf_str(&out, a->org);
        jn_buf_puts(&out, ",\"deleted\":true}");
        print_line(&out);
        jn_buf_free(&out);
    }
    env_close(&e);
    return rc;
}

/* ---- creds rotate --------------------------------------------------------- */

typedef struct {
    const char *id;
    int found;
    char provider[128], auth_type[64];
    char *metadata; /* of the current version */
    int64_t pending;
} cred_info_t;

static int cred_info_cb(void *ud, const jn_credential_info_t *info)
{
    cred_info_t *c = ud;

    if (strcmp(info->id, c->id) != 0)
        return 0;
    c->found = 1;
    snprintf(c->provider, sizeof(c->provider), "%s", info->provider ? info->provider : "");
    snprintf(c->auth_type, sizeof(c->auth_type), "%s", info->auth_type ? info->auth_type : "");
    if (info->state && strcmp(info->state, "pending") == 0)
        c->pending = info->version;
    if (info->state && strcmp(info->state, "current") == 0 && info->metadata_json) {
        free(c->metadata);
        c->metadata = strdup(info->metadata_json);
    }
    return 0;
}

typedef struct {
    int done;
    jn_job_status_t status;
    char *result;
    char *error;
} test_state_t;

static void test_done(void *ud, jn_job_t *job)
{
    test_state_t *t = ud;

    t->done = 1;
    t->status = jn_job_status(job);
    if (jn_job_result_json(job))
        t->result = strdup(jn_job_result_json(job));
    if (jn_job_error(job))
        t->error = strdup(jn_job_error(job));
}

static int test_emit(void *ud, jn_job_t *job, const jn_evidence_t *it, char *err, size_t errlen)
{
    (void)ud, (void)job, (void)it;
    snprintf(err, errlen, "test_connection cannot emit evidence");
    return -1;
}

static void redact_add(void *ud, const char *s, size_t n)
{
    jn_redactor_add_secret(ud, s, n);
}

/* Runs test_connection of the connector with version `version` injected.
 * Returns 1 when it passed, 0 when it failed, -1 when it could not run (the
 * reason printed). The result (or error) is appended to `out` as JSON. */
static int run_connection_test(env_t *e, const creds_args_t *a, int64_t version, jn_buf_t *out)
{
    jn_connector_t *conn = NULL;
    jn_auth_t *auth = NULL;
    jn_job_opts_t opts = {0};
    test_state_t t = {0};
    jn_runtime_t rt;
    uv_loop_t loop;
    jn_redactor_t *red = NULL;
    char *errors = NULL, err[512], requester[600];
    const char *v;
    size_t vlen;
    int i, rc = -1;

    conn = jn_connector_load_file(a->connector, &errors);
    if (conn == NULL) {
        fprintf(stderr, "junction: %s", errors ? errors : "out of memory\n");
        free(errors);
        return -1;
    }
    snprintf(requester, sizeof(requester), "connection-test:%s", a->connector);
    if (jn_cli_credential_auth(e->vault, a->org, a->id, version, requester, &auth, NULL, err,
                               sizeof(err)) != 0) {
        fprintf(stderr, "junction: cannot use version %" PRId64 " of credential '%s': %s\n",
                version, a->id, err);
        jn_connector_unref(conn);
        return -1;
    }
    /* the result printed below is scrubbed of the tested secret too */
    if ((red = jn_redactor_create()) != NULL)
        jn_auth_each_secret(auth, redact_add, red);
    uv_loop_init(&loop);
    if (jn_runtime_init(&rt, &loop, e->cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "junction: %s\n", err);
        uv_loop_close(&loop);
        goto out;
    }
    for (i = 0; i < a->nallow; i++)
        jn_runtime_allow_host(&rt, a->allow[i]);
    opts.connector = conn;
    opts.entry = "test_connection";
    opts.config_json = a->config_json ? a->config_json : "{}";
    opts.organization_id = a->org;
    opts.auth = auth;
    opts.hooks = (jn_job_hooks_t){test_emit, test_done, &t};
    if (jn_job_start(&rt, &opts, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "junction: %s\n", err);
    } else {
        uv_run(&loop, UV_RUN_DEFAULT);
        if (t.status == JN_JOB_SUCCEEDED && t.result) {
            v = js_get(t.result, "success", &vlen);
            rc = v && vlen == 4 && memcmp(v, "true", 4) == 0;
        } else {
            rc = 0;
        }
        if (t.result && js_members(t.result, strlen(t.result), NULL, NULL) == 0) {
            char *clean = jn_redactor_scrub(red, t.result, strlen(t.result));
            jn_buf_puts(out, clean ? clean : t.result);
            free(clean);
        } else {
            jn_buf_puts(out, "{\"success\":false,\"message\":");
            buf_str(out, t.error ? t.error
                                 : "test_connection did not return a ConnectionTestResult table");
            jn_buf_puts(out, "}");
        }
    }
    jn_runtime_close(&rt);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
out:
    if (red)
        jn_redactor_destroy(red);
    if (auth)
        jn_auth_free(auth);
    jn_connector_unref(conn);
    free(t.result);
    free(t.error);
    return rc;
}

static int creds_rotate(const creds_args_t *a)
{
    env_t e;
    cred_info_t ci = {0};
    jn_buf_t meta = {0}, out = {0}, test = {0};
    char *doc = NULL, detail[256];
    const char *label_raw = NULL;
    size_t len = 0, label_len = 0;
    int64_t version = 0;
    int rc, passed;

    if (!a->org)
        return missing("--org ORG", creds_usage);
    if (!a->id)
        return missing("--id ID", creds_usage);
    if (!a->from_file && !a->promote && !a->discard)
        return missing("--from-file FILE.json (or --promote / --discard)", creds_usage);
    if (a->promote + a->discard + (a->connector != NULL) > 1) {
        fprintf(stderr, "junction: --connector, --promote and --discard exclude each other\n");
        return 2;
    }
    if ((a->config_json || a->nallow) && !a->connector) {
        fprintf(stderr, "junction: --config and --allow-host need --connector\n");
        return 2;
    }
    if (a->from_file && (rc = read_document(a->from_file, &doc, &len)) != 0)
        return rc;
    if ((rc = env_open(&e, a, 1, NULL)) != 0)
        goto done;
    ci.id = a->id;
    if ((rc = jn_vault_list(e.vault, a->org, cred_info_cb, &ci)) != 0) {
        fprintf(stderr, "junction: %s\n", jn_vault_errmsg(e.vault));
        rc = vault_exit(rc);
        goto close;
    }
    if (!ci.found) {
        fprintf(stderr, "junction: no credential '%s' in organization '%s'\n", a->id, a->org);
        rc = 2;
        goto close;
    }

    if (!a->from_file) { /* promote or discard the pending version */
        if (!ci.pending) {
            fprintf(stderr, "junction: credential '%s' has no pending version\n", a->id);
            rc = 2;
            goto close;
        }
        rc = a->promote ? jn_vault_promote(e.vault, a->org, a->id, ci.pending, ACTOR)
                        : jn_vault_discard_pending(e.vault, a->org, a->id, ACTOR);
        if (rc != 0) {
            fprintf(stderr, "junction: %s\n", jn_vault_errmsg(e.vault));
            rc = vault_exit(rc);
            goto close;
        }
        snprintf(detail, sizeof(detail), ",\"version\":%" PRId64 ",\"outcome\":\"%s\"}", ci.pending,
                 a->promote ? "promoted" : "discarded");
        goto print;
    }

    if (ci.pending) {
        fprintf(stderr,
                "junction: credential '%s' already has a pending version %" PRId64
                "; promote it (--promote) or discard it (--discard) first\n",
                a->id, ci.pending);
        rc = 2;
        goto close;
    }
    if ((rc = validate_document(ci.auth_type, doc, len, a->from_file, NULL)) != 0)
        goto close;
    if (!a->label)
        label_raw = js_get(ci.metadata, "label", &label_len);
    if (build_metadata(&meta, ci.provider, ci.auth_type, a->label, label_raw, label_len, doc,
                       len) != 0) {
        fprintf(stderr, "junction: out of memory\n");
        rc = 1;
        goto close;
    }
    rc = jn_vault_rotate_credential(e.vault, a->org, a->id, doc, len, meta.data, ACTOR, &version);
    jn_secmem_free(doc);
    doc = NULL;
    if (rc != 0) {
        fprintf(stderr, "junction: cannot rotate credential '%s': %s\n", a->id,
                jn_vault_errmsg(e.vault));
        rc = vault_exit(rc);
        goto close;
    }

    if (a->connector) {
        passed = run_connection_test(&e, a, version, &test);
        snprintf(detail, sizeof(detail), "{\"result\":\"%s\",\"version\":%" PRId64 "}",
                 passed == 1   ? "passed"
                 : passed == 0 ? "failed"
                               : "error",
                 version);
        if (jn_vault_audit(e.vault, a->org, a->id, ACTOR, "connection.test", detail) != 0)
            fprintf(stderr, "junction: cannot audit the connection test: %s\n",
                    jn_vault_errmsg(e.vault));
        rc = passed == 1 ? jn_vault_promote(e.vault, a->org, a->id, version, ACTOR)
                         : jn_vault_discard_pending(e.vault, a->org, a->id, ACTOR);
        if (rc != 0) {
            fprintf(stderr, "junction: cannot %s version %" PRId64 ": %s\n",
                    passed == 1 ? "promote" : "discard", version, jn_vault_errmsg(e.vault));
            rc = 1;
            goto close;
        }
        if (passed != 1)
            fprintf(stderr,
                    "junction: the connection test of version %" PRId64
                    " failed; it was discarded and the current version stays in use\n",
                    version);
        snprintf(detail, sizeof(detail),
                 ",\"version\":%" PRId64 ",\"outcome\":\"%s\",\"test\":", version,
                 passed == 1 ? "promoted" : "discarded");
        jn_buf_puts(&out, "{\"id\":");
        buf_str(&out, a->id);
        jn_buf_puts(&out, detail);
        jn_buf_puts(&out, test.len ? test.data : "null");
        jn_buf_puts(&out, "}");
        print_line(&out);
        rc = passed == 1 ? 0 : 1;
        goto close;
    }
    if (a->promote) {
        if ((rc = jn_vault_promote(e.vault, a->org, a->id, version, ACTOR)) != 0) {
            fprintf(stderr, "junction: cannot promote version %" PRId64 ": %s\n", version,
                    jn_vault_errmsg(e.vault));
            rc = 1;
            goto close;
        }
        snprintf(detail, sizeof(detail), ",\"version\":%" PRId64 ",\"outcome\":\"promoted\"}",
                 version);
    } else {
        fprintf(stderr,
                "junction: version %" PRId64
                " is pending and not in use yet: test it with 'junction creds rotate --org %s "
                "--id %s --from-file ... --connector FILE' next time, or promote it now with "
                "'junction creds rotate --org %s --id %s --promote'\n",
                version, a->org, a->id, a->org, a->id);
        snprintf(detail, sizeof(detail), ",\"version\":%" PRId64 ",\"outcome\":\"pending\"}",
                 version);
    }
print:
    jn_buf_puts(&out, "{\"id\":");
    buf_str(&out, a->id);
    jn_buf_puts(&out, detail);
    print_line(&out);
    rc = 0;
close:
    env_close(&e);
done:
    jn_secmem_free(doc);
    free(ci.metadata);
    jn_buf_free(&meta);
    jn_buf_free(&out);
    jn_buf_free(&test);
    return rc;
}

int jn_cli_creds(int argc, char **argv)
{
    creds_args_t a = {0};
    const char *cmd = argc >= 2 ? argv[1] : NULL;
    int rc;

    if (cmd == NULL || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
        strcmp(cmd, "help") == 0) {
        fputs(creds_usage, cmd ? stdout : stderr);
        return cmd ? 0 : 2;
    }
    rc = parse_args(argc - 1, argv + 1, &a, strcmp(cmd, "rotate") == 0);
    if (rc != 0) {
        fputs(creds_usage, rc > 0 ? stdout : stderr);
        return rc > 0 ? 0 : 2;
    }
    if (strcmp(cmd, "put") == 0)
        return creds_put(&a);
    if (strcmp(cmd, "list") == 0)
        return creds_list(&a);
    if (strcmp(cmd, "rm") == 0)
        return creds_rm(&a);
    if (strcmp(cmd, "rotate") == 0)
        return creds_rotate(&a);
    fprintf(stderr, "junction: unknown creds command '%s'\n\n%s", cmd, creds_usage);
    return 2;
}

/* ---- keys rotate ---------------------------------------------------------- */

static int keys_progress(void *ud, const char *what, const char *org, const char *cred)
{
    (void)ud;
    printf("%s org=%s%s%s\n", what, org ? org : "-", cred ? " credential=" : "", cred ? cred : "");
    fflush(stdout);
    return 0;
}

static int keys_in_use(void *ud, const char *key_id, size_t deks)
{
    int *n = ud;

    printf("master key %s wraps %zu live data key%s\n", key_id, deks, deks == 1 ? "" : "s");
    (*n)++;
    return 0;
}

int jn_cli_keys(int argc, char **argv)
{
    creds_args_t a = {0};
    jn_vault_opts_t vopts = {0};
    jn_vault_rotation_stats_t stats = {0};
    char key_id[JN_KEY_ID_MAX + 1];
    env_t e;
    int rc, nkeys = 0;

    if (argc < 2 || strcmp(argv[1], "rotate") != 0) {
        int help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0);
        if (!help && argc >= 2)
            fprintf(stderr, "junction: unknown keys command '%s'\n\n", argv[1]);
        fputs(keys_usage, help ? stdout : stderr);
        return help ? 0 : 2;
    }
    rc = parse_args(argc - 1, argv + 1, &a, 0);
    if (rc != 0) {
        fputs(keys_usage, rc > 0 ? stdout : stderr);
        return rc > 0 ? 0 : 2;
    }
    vopts.progress = keys_progress;
    if ((rc = env_open(&e, &a, 1, &vopts)) != 0)
        return rc;
    if (jn_keyprovider_current_key_id(e.kp, key_id) != 0)
        snprintf(key_id, sizeof(key_id), "?");
    if (a.org) {
        printf("rotating the data key of organization %s (master key %s)\n", a.org, key_id);
        rc = jn_vault_rotate_org_key(e.vault, a.org, ACTOR, &stats);
    } else {
        printf("re-wrapping data keys under master key %s\n", key_id);
        rc = jn_vault_rotate_master_key(e.vault, ACTOR, &stats);
    }
    if (rc != 0) {
        fprintf(stderr, "junction: key rotation stopped: %s\n", jn_vault_errmsg(e.vault));
        if (vault_exit(rc) == 1)
            fprintf(stderr, "junction: what was done is kept; run the command again to resume\n");
        env_close(&e);
        return vault_exit(rc);
    }
    if (a.org)
        printf("organization %s: %zu credential version%s re-encrypted, %zu already under the "
               "new data key\n",
               a.org, stats.done, stats.done == 1 ? "" : "s", stats.skipped);
    else
        printf("master key rotation: %zu data key%s re-wrapped, %zu already under %s\n", stats.done,
               stats.done == 1 ? "" : "s", stats.skipped, key_id);
    if (jn_vault_master_keys_in_use(e.vault, keys_in_use, &nkeys) != 0)
        fprintf(stderr, "junction: %s\n", jn_vault_errmsg(e.vault));
    else if (nkeys <= 1)
        printf("only master key %s is in use; older keys may be removed from the key file\n",
               key_id);
    env_close(&e);
    return 0;
}

/* ---- audit verify --------------------------------------------------------- */

typedef struct {
    char action[64];
    int64_t n;
} action_count_t;

typedef struct {
    action_count_t c[64];
    size_t n;
} action_counts_t;

static int count_action(void *ud, const jn_audit_record_t *rec)
{
    action_counts_t *ac = ud;
    size_t i;

    for (i = 0; i < ac->n; i++)
        if (strcmp(ac->c[i].action, rec->action) == 0) {
            ac->c[i].n++;
            return 0;
        }
    if (ac->n < sizeof(ac->c) / sizeof(ac->c[0])) {
        snprintf(ac->c[ac->n].action, sizeof(ac->c[0].action), "%s", rec->action);
        ac->c[ac->n++].n = 1;
    }
    return 0;
}

static int anchor_valid(const char *s)
{
    const char *h = strchr(s, ':');
    size_t i;

    if (h) {
        if (h == s)
            return 0;
        for (i = 0; s + i < h; i++)
            if (s[i] < '0' || s[i] > '9')
                return 0;
        s = h + 1;
    }
    if (strlen(s) != JN_AUDIT_HASH_HEX)
        return 0;
    for (i = 0; s[i]; i++)
        if (!strchr("0123456789abcdefABCDEF", s[i]))
            return 0;
    return 1;
}

int jn_cli_audit(int argc, char **argv)
{
    creds_args_t a = {0};
    action_counts_t ac;
    char report[1024], err[256];
    int64_t bad = 0;
    size_t i;
    env_t e;
    int rc;

    if (argc < 2 || strcmp(argv[1], "verify") != 0) {
        int help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0);
        if (!help && argc >= 2)
            fprintf(stderr, "junction: unknown audit command '%s'\n\n", argv[1]);
        fputs(audit_usage, help ? stdout : stderr);
        return help ? 0 : 2;
    }
    rc = parse_args(argc - 1, argv + 1, &a, 0);
    if (rc != 0) {
        fputs(audit_usage, rc > 0 ? stdout : stderr);
        return rc > 0 ? 0 : 2;
    }
    if (a.anchor && !anchor_valid(a.anchor)) {
        fprintf(stderr, "junction: --anchor must be '<seq>:<64 hex digits>' (as printed by a "
                        "previous verify), or the bare hash\n");
        return 2;
    }
    if ((rc = env_open(&e, &a, 0, NULL)) != 0)
        return rc;
    rc = jn_audit_verify(e.store, a.anchor, &bad, report, sizeof(report));
    if (rc == 0) {
        printf("%s\n", report);
        memset(&ac, 0, sizeof(ac));
        if (jn_store_audit_each(e.store, 1, count_action, &ac) == 0 && ac.n > 0) {
            printf("entries by action:");
            for (i = 0; i < ac.n; i++)
                printf(" %s=%" PRId64, ac.c[i].action, ac.c[i].n);
            printf("\n");
        }
        if (jn_audit_anchor(e.store, report, err, sizeof(err)) == 0)
            printf("anchor (keep it outside this database): %s\n", report);
    } else if (rc == 1) {
        printf("%s\n", report);
        fprintf(stderr, "junction: audit log verification failed at entry %" PRId64 "\n", bad);
        rc = 1;
    } else {
        fprintf(stderr, "junction: cannot verify the audit log: %s\n", report);
        rc = 1;
    }
    env_close(&e);
    return rc;
}
