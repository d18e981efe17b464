/* Organization tokens of the HTTP API, and `junction tokens`.
 *
 * A token is "jnt_<id>_<secret>": the id (32 hex) finds the row, the secret
 * (64 hex, 256 random bits) proves possession. The store keeps only
 * SHA-256(salt || secret) with a random 16-byte salt per token, so a copy of
 * the database yields no usable token; the secret's entropy makes a slow hash
 * unnecessary. The comparison is constant time, and every way a token can be
 * wrong (malformed, unknown id, revoked, wrong secret) gets the same answer.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cli.h"
#include "json_canon.h"
#include "junction/clock.h"
#include "junction/crypto.h"
#include "junction/error.h"

#define TOKEN_PREFIX "jnt_"
#define TOKEN_ID_LEN 32
#define TOKEN_SECRET_LEN 64 /* hex of 32 random bytes */
#define TOKEN_SALT_LEN 16

static void token_hash(const uint8_t *salt, size_t salt_len, const char *secret, size_t len,
                       uint8_t out[JN_SHA256_LEN])
{
    uint8_t buf[TOKEN_SALT_LEN + TOKEN_SECRET_LEN];

    memcpy(buf, salt, salt_len);
    memcpy(buf + salt_len, secret, len);
    jn_sha256(buf, salt_len + len, out);
    memset(buf, 0, sizeof(buf));
}

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (jn_hex_value((unsigned char)s[i]) < 0 || (s[i] >= 'A' && s[i] <= 'F'))
            return 0;
    return 1;
}

int jn_api_token_create(jn_store_t *store, const char *org, const char *scope, const char *label,
                        char token[JN_API_TOKEN_MAX], char id[33], char *err, size_t errlen)
{
    uint8_t raw[TOKEN_SECRET_LEN / 2], salt[TOKEN_SALT_LEN], hash[JN_SHA256_LEN];
    char secret[TOKEN_SECRET_LEN + 1];
    jn_api_token_t t = {0};
    int rc;

    if (jn_cli_check_id("organization", org, err, errlen) != 0)
        return -1;
    if (scope == NULL || (strcmp(scope, "read") != 0 && strcmp(scope, "write") != 0))
        return jn_errorf(err, errlen, "scope must be read or write, got '%s'",
                         scope ? scope : "(none)");
    if (label != NULL && strlen(label) > 200)
        return jn_errorf(err, errlen, "label is longer than 200 characters");
    if (jn_random_id(id) != 0 || jn_random_bytes(raw, sizeof(raw)) != 0 ||
        jn_random_bytes(salt, sizeof(salt)) != 0)
        return jn_errorf(err, errlen, "no random bytes for a token");
    jn_hex_encode(raw, sizeof(raw), secret);
    token_hash(salt, sizeof(salt), secret, TOKEN_SECRET_LEN, hash);
    t.id = id;
    t.organization_id = org;
    t.scope = scope;
    t.salt = salt;
    t.salt_len = sizeof(salt);
    t.hash = hash;
    t.hash_len = sizeof(hash);
    t.label = label;
    rc = jn_store_api_token_insert(store, &t);
    if (rc == 0)
        snprintf(token, JN_API_TOKEN_MAX, TOKEN_PREFIX "%s_%s", id, secret);
    memset(raw, 0, sizeof(raw));
    memset(secret, 0, sizeof(secret));
    if (rc != 0)
        return jn_errorf(err, errlen, "cannot store the token: %s", jn_store_errmsg(store));
    return 0;
}

typedef struct {
    const char *secret;
    jn_api_token_grant_t *out;
    int ok;
} check_t;

static int check_cb(void *ud, const jn_api_token_t *t)
{
    check_t *c = ud;
    uint8_t hash[JN_SHA256_LEN];

    if (t->salt_len != TOKEN_SALT_LEN || t->hash_len != JN_SHA256_LEN)
        return 1;
    token_hash(t->salt, t->salt_len, c->secret, TOKEN_SECRET_LEN, hash);
    /* the hash is compared whether or not the token is revoked: same work */
    c->ok = jn_ct_equal(hash, t->hash, JN_SHA256_LEN) && t->revoked_ms == 0;
    if (c->ok) {
        snprintf(c->out->organization_id, sizeof(c->out->organization_id), "%s",
                 t->organization_id);
        c->out->write = strcmp(t->scope, "write") == 0;
    }
    return 1;
}

int jn_api_token_check(jn_store_t *store, const char *presented, jn_api_token_grant_t *out)
{
    char id[TOKEN_ID_LEN + 1];
    const char *p = presented;
    check_t c = {NULL, out, 0};
    int rc;

    memset(out, 0, sizeof(*out));
    if (p == NULL || strlen(p) != sizeof(TOKEN_PREFIX) - 1 + TOKEN_ID_LEN + 1 + TOKEN_SECRET_LEN ||
        strncmp(p, TOKEN_PREFIX, sizeof(TOKEN_PREFIX) - 1) != 0)
        return 1;
    p += sizeof(TOKEN_PREFIX) - 1;
    if (!is_hex(p, TOKEN_ID_LEN) || p[TOKEN_ID_LEN] != '_' ||
        !is_hex(p + TOKEN_ID_LEN + 1, TOKEN_SECRET_LEN))
        return 1;
    memcpy(id, p, TOKEN_ID_LEN);
    id[TOKEN_ID_LEN] = '\0';
    c.secret = p + TOKEN_ID_LEN + 1;
    rc = jn_store_api_token_get(store, id, check_cb, &c);
    if (rc < 0)
        return -1;
    return c.ok ? 0 : 1;
}

/* ---- junction tokens ------------------------------------------------------ */

static const char tokens_usage[] =
    "usage: junction tokens <command> [options]\n"
    "  create --org ORG --scope read|write [--label TEXT]\n"
    "                       create an organization token for the HTTP API; the token is\n"
    "                       printed once (only a salted hash of it is stored)\n"
    "  list [--org ORG]     one JSON line per token (never the token itself)\n"
    "  revoke ID            revoke a token at once (its row is kept, marked revoked)\n"
    "common options:\n"
    "  --config FILE        runtime config file (data_dir)\n"
    "  --data-dir DIR       the store's directory (overrides data_dir)\n";

typedef struct {
    const char *config, *data_dir, *org, *scope, *label;
    int nargs;
    char *args[4];
} tokens_args_t;

static int buf_str(jn_buf_t *b, const char *s)
{
    return s ? jn_json_append_string(b, s, strlen(s)) : jn_buf_puts(b, "null");
}

static int list_cb(void *ud, const jn_api_token_t *t)
{
    jn_buf_t b = {0};
    char t1[32], t2[32];

    (void)ud;
    jn_buf_puts(&b, "{\"id\":");
    buf_str(&b, t->id);
    jn_buf_puts(&b, ",\"organization_id\":");
    buf_str(&b, t->organization_id);
    jn_buf_puts(&b, ",\"scope\":");
    buf_str(&b, t->scope);
    jn_buf_puts(&b, ",\"label\":");
    buf_str(&b, t->label);
    jn_buf_puts(&b, ",\"created_at\":");
    buf_str(&b, jn_format_rfc3339(t->created_ms, t1, sizeof(t1)));
    jn_buf_puts(&b, ",\"revoked_at\":");
    buf_str(&b, t->revoked_ms > 0 ? jn_format_rfc3339(t->revoked_ms, t2, sizeof(t2)) : NULL);
    jn_buf_puts(&b, "}");
    puts(b.data ? b.data : "{}");
    jn_buf_free(&b);
    return 0;
}

static const jn_cli_opt_t tokens_opts[] = {JN_CLI_STR(tokens_args_t, "config", config),
                                           JN_CLI_STR(tokens_args_t, "config-file", config),
                                           JN_CLI_STR(tokens_args_t, "data-dir", data_dir),
                                           JN_CLI_STR(tokens_args_t, "org", org),
                                           JN_CLI_STR(tokens_args_t, "scope", scope),
                                           JN_CLI_STR(tokens_args_t, "label", label),
                                           JN_CLI_HELP,
                                           JN_CLI_END};

int jn_cli_tokens(int argc, char **argv)
{
    const char *cmd = argc >= 2 ? argv[1] : NULL;
    tokens_args_t a = {0};
    jn_cli_env_t e;
    char token[JN_API_TOKEN_MAX], id[33], err[512];
    int first, rc;

    if (cmd == NULL || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(tokens_usage, cmd ? stdout : stderr);
        return cmd ? 0 : 2;
    }
    /* argv[1], the subcommand, starts the messages as getopt_long's did */
    first = jn_cli_opts_parse(tokens_opts, argc - 1, argv + 1, &a, err, sizeof(err));
    if (first == JN_CLI_OPTS_HELP) {
        fputs(tokens_usage, stdout);
        return 0;
    }
    if (first < 0) {
        jn_cli_opts_print_error(first, err);
        fputs(tokens_usage, stderr);
        return 2;
    }
    for (int i = first + 1; i < argc && a.nargs < 4; i++)
        a.args[a.nargs++] = argv[i];
    if (strcmp(cmd, "create") != 0 && strcmp(cmd, "list") != 0 && strcmp(cmd, "revoke") != 0) {
        fprintf(stderr, "junction: unknown tokens command '%s'\n\n%s", cmd, tokens_usage);
        return 2;
    }
    if (strcmp(cmd, "create") == 0 && (a.org == NULL || a.scope == NULL || a.nargs != 0)) {
        fprintf(stderr, "junction: tokens create needs --org ORG and --scope read|write\n");
        return 2;
    }
    if (strcmp(cmd, "revoke") == 0 && a.nargs != 1) {
        fprintf(stderr, "junction: tokens revoke needs the token's id\n");
        return 2;
    }
    if (strcmp(cmd, "list") == 0 && a.nargs != 0) {
        fprintf(stderr, "junction: unexpected argument '%s'\n", a.args[0]);
        return 2;
    }
    if ((rc = jn_cli_env_open(&e, a.config, a.data_dir)) != 0)
        return rc;
    if (strcmp(cmd, "create") == 0) {
        if (jn_api_token_create(e.store, a.org, a.scope, a.label, token, id, err, sizeof(err)) !=
            0) {
            fprintf(stderr, "junction: %s\n", err);
            rc = 2;
        } else {
            printf("{\"id\":\"%s\",\"organization_id\":\"%s\",\"scope\":\"%s\",\"token\":\"%s\"}\n",
                   id, a.org, a.scope, token);
            memset(token, 0, sizeof(token));
        }
    } else if (strcmp(cmd, "list") == 0) {
        if (jn_store_api_token_each(e.store, a.org, list_cb, NULL) != 0) {
            fprintf(stderr, "junction: %s\n", jn_store_errmsg(e.store));
            rc = 1;
        }
    } else {
        rc = jn_store_api_token_revoke(e.store, a.args[0], jn_now_ms());
        if (rc < 0)
            fprintf(stderr, "junction: %s\n", jn_store_errmsg(e.store));
        else if (rc > 0)
            fprintf(stderr, "junction: no live token '%s'\n", a.args[0]);
        else {
            jn_buf_t b = {0};
            jn_buf_puts(&b, "{\"id\":");
            buf_str(&b, a.args[0]);
            jn_buf_puts(&b, ",\"revoked\":true}");
            puts(b.data ? b.data : "{}");
            jn_buf_free(&b);
        }
        rc = rc < 0 ? 1 : rc > 0 ? 2 : 0;
    }
    jn_cli_env_close(&e);
    return rc;
}
