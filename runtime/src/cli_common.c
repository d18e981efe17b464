#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "junction/error.h"
#include "junction/log.h"
#include "junction/redact.h"

jn_config_t *jn_cli_load_config(const char *path)
{
    jn_config_t *cfg = jn_config_create();
    char err[1024];

    if (cfg == NULL) {
        fprintf(stderr, "junction: out of memory\n");
        return NULL;
    }
    if (path == NULL)
        path = getenv("JUNCTION_CONFIG");
    if (path && *path && jn_config_load_file(cfg, path, err, sizeof(err)) != 0)
        goto fail;
    if (jn_config_load_env(cfg, NULL, err, sizeof(err)) != 0)
        goto fail;
    jn_log_set_level((jn_log_level_t)jn_log_level_parse(jn_config_str(cfg, "log_level")));
    return cfg;
fail:
    fprintf(stderr, "junction: config: %s\n", err);
    jn_config_destroy(cfg);
    return NULL;
}

static char *read_secret_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf;
    size_t n;

    if (f == NULL) {
        jn_log_error("cannot read token file '%s': %s", path, strerror(errno));
        return NULL;
    }
    buf = calloc(1, 8192);
    n = buf ? fread(buf, 1, 8191, f) : 0;
    fclose(f);
    if (buf == NULL)
        return NULL;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return buf;
}

char *jn_cli_auth_header(const char *token_file, const char *token_env, const char *scheme)
{
    char *token = NULL, *line = NULL;
    const char *v;

    if (token_file) {
        token = read_secret_file(token_file);
    } else if (token_env) {
        v = getenv(token_env);
        if (v == NULL || *v == '\0')
            jn_log_error("environment variable %s (the token) is not set", token_env);
        else
            token = strdup(v);
    }
    if (token == NULL)
        return NULL;
    if (*token == '\0' || strpbrk(token, "\r\n") != NULL) {
        jn_log_error("the token is empty or spans several lines");
        free(token);
        return NULL;
    }
    jn_redactor_add_secret(jn_redactor_global(), token, strlen(token));
    line = malloc(strlen(scheme) + strlen(token) + 32);
    if (line)
        sprintf(line, "Authorization: %s %s", scheme, token);
    memset(token, 0, strlen(token));
    free(token);
    return line;
}

int jn_mkdir_p(const char *path)
{
    char buf[4096];
    size_t i, n = strlen(path);

    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, path, n + 1);
    for (i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return -1;
        if (i < n)
            buf[i] = '/';
    }
    return 0;
}

jn_store_t *jn_cli_open_store(const char *dir)
{
    char path[4096], err[512];
    jn_store_t *s;

    if (jn_mkdir_p(dir) != 0) {
        fprintf(stderr, "junction: cannot create data directory '%s'\n", dir);
        return NULL;
    }
    if ((size_t)snprintf(path, sizeof(path), "%s/junction.db", dir) >= sizeof(path)) {
        fprintf(stderr, "junction: data directory path too long\n");
        return NULL;
    }
    s = jn_store_open_sqlite(path, err, sizeof(err));
    if (s == NULL)
        fprintf(stderr, "junction: %s\n", err);
    return s;
}

jn_vault_t *jn_cli_open_vault(jn_store_t *store, const jn_vault_opts_t *opts, jn_keyprovider_t **kp)
{
    jn_vault_t *v;
    const char *file = getenv(JN_ENV_MASTER_KEY_FILE), *env = getenv(JN_ENV_MASTER_KEY);
    char err[512];

    *kp = NULL;
    if ((file == NULL || *file == '\0') && (env == NULL || *env == '\0')) {
        fprintf(stderr,
                "junction: no master key: set %s to a key file (mode 0600, one line "
                "'<key-id> <base64 of 32 random bytes>') or %s to '<key-id>:<base64>'\n",
                JN_ENV_MASTER_KEY_FILE, JN_ENV_MASTER_KEY);
        return NULL;
    }
    *kp = jn_keyprovider_from_env(err, sizeof(err));
    if (*kp == NULL) {
        fprintf(stderr, "junction: master key: %s\n", err);
        return NULL;
    }
    v = jn_vault_create(store, *kp, opts, err, sizeof(err));
    if (v == NULL) {
        fprintf(stderr, "junction: vault: %s\n", err);
        jn_keyprovider_destroy(*kp);
        *kp = NULL;
    }
    return v;
}

typedef struct {
    const char *id;
    char auth_type[64];
    char provider[72];
    int found;
} find_cred_t;

static int find_cred_cb(void *ud, const jn_credential_info_t *info)
{
    find_cred_t *f = ud;

    if (strcmp(info->id, f->id) != 0)
        return 0;
    snprintf(f->auth_type, sizeof(f->auth_type), "%s", info->auth_type ? info->auth_type : "");
    snprintf(f->provider, sizeof(f->provider), "%s", info->provider ? info->provider : "");
    f->found = 1;
    return 1;
}

int jn_cli_credential_auth(jn_vault_t *v, const char *org, const char *credential_id,
                           int64_t version, const char *requester, jn_auth_t **out,
                           int64_t *version_out, char *err, size_t errlen)
{
    find_cred_t f = {credential_id, "", "", 0};
    jn_secret_t secret = {0};
    int64_t got = 0;
    char perr[512];
    int rc;

    *out = NULL;
    rc = jn_vault_list(v, org, find_cred_cb, &f);
    if (rc != 0) {
        snprintf(err, errlen, "%s", jn_vault_errmsg(v));
        return rc;
    }
    if (!f.found) {
        snprintf(err, errlen, "no credential '%s' in organization '%s'", credential_id, org);
        return JN_VAULT_ENOTFOUND;
    }
    rc = jn_vault_get_version(v, org, credential_id, version, requester, &secret, &got);
    if (rc != 0) {
        snprintf(err, errlen, "%s", jn_vault_errmsg(v));
        return rc;
    }
    if (version_out != NULL)
        *version_out = got;
    rc = jn_auth_parse(f.auth_type, secret.data, secret.len, out, perr, sizeof(perr));
    jn_secret_free(&secret);
    if (rc != 0) {
        snprintf(err, errlen, "credential '%s' (%s) is not usable: %s", credential_id, f.auth_type,
                 perr);
        *out = NULL;
        return JN_VAULT_EINVAL;
    }
    /* Its origin lets the runtime share its tokens across processes; a
     * credential that names no OAuth client gets its organization's. */
    if (jn_auth_set_origin(*out, org, credential_id, got, version == 0) != 0) {
        snprintf(err, errlen, "out of memory");
        rc = JN_VAULT_ERROR;
    } else {
        rc = jn_cli_bind_oauth_client(v, org, f.provider, credential_id, requester, *out, err,
                                      errlen);
    }
    if (rc != 0) {
        jn_auth_free(*out);
        *out = NULL;
    }
    return rc;
}

int jn_cli_store_rotated(jn_vault_t *v, const char *org, const char *credential_id,
                         const char *new_document_json)
{
    int64_t version = 0;
    int rc;

    rc = jn_vault_rotate_credential(v, org, credential_id, new_document_json,
                                    strlen(new_document_json), NULL, "token-refresh", &version);
    if (rc == 0)
        rc = jn_vault_promote(v, org, credential_id, version, "token-refresh");
    if (rc != 0) {
        jn_log_error("credential '%s': cannot store the rotated refresh token: %s", credential_id,
                     jn_vault_errmsg(v));
        return -1;
    }
    jn_log_info("credential '%s': the provider rotated the refresh token; stored as version %lld",
                credential_id, (long long)version);
    return 0;
}

/* ---- options ---------------------------------------------------------------- */

static int opts_usage_error(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int opts_usage_error(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (err != NULL && errlen > 0)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return JN_CLI_OPTS_USAGE;
}

/* The option `text` (after "--", up to '=' or its end) names: an exact
 * match, else the one option it is a prefix of. Prefixes of several options
 * that fill the same field with the same kind are not ambiguous (getopt_long:
 * same has_arg and val). NULL with the message in err. */
static const jn_cli_opt_t *opts_find_long(const jn_cli_opt_t *opts, const char *cmd,
                                          const char *text, size_t len, char *err, size_t errlen)
{
    const jn_cli_opt_t *o, *found = NULL;
    int ambiguous = 0;
    size_t used;

    for (o = opts; o->name != NULL; o++)
        if (strlen(o->name) == len && strncmp(o->name, text, len) == 0)
            return o;
    for (o = opts; o->name != NULL; o++) {
        if (strncmp(o->name, text, len) != 0)
            continue;
        if (found == NULL)
            found = o;
        else if (o->kind != found->kind || o->offset != found->offset)
            ambiguous = 1;
    }
    if (found == NULL) {
        opts_usage_error(err, errlen, "%s: unrecognized option '--%s'", cmd, text);
        return NULL;
    }
    if (!ambiguous)
        return found;
    if (err != NULL && errlen > 0) {
        used = (size_t)snprintf(err, errlen, "%s: option '--%s' is ambiguous; possibilities:", cmd,
                                text);
        for (o = opts; o->name != NULL && used < errlen; o++)
            if (strncmp(o->name, text, len) == 0)
                used += (size_t)snprintf(err + used, errlen - used, " '--%s'", o->name);
    }
    return NULL;
}

static const jn_cli_opt_t *opts_find_letter(const jn_cli_opt_t *opts, char letter)
{
    const jn_cli_opt_t *o;

    for (o = opts; o->name != NULL; o++)
        if (o->letter != 0 && o->letter == letter)
            return o;
    return NULL;
}

/* Stores `value` (NULL for a flag) as option o wants. */
static int opts_store(const jn_cli_opt_t *o, const char *value, void *args, char *err,
                      size_t errlen)
{
    char *field = (char *)args + o->offset, *end;
    long long n;
    int *count;

    switch (o->kind) {
    case JN_CLI_OPT_STRING:
        *(const char **)(void *)field = value;
        return 0;
    case JN_CLI_OPT_FLAG:
        *(int *)(void *)field = 1;
        return 0;
    case JN_CLI_OPT_LIST:
        count = (int *)(void *)((char *)args + o->count_offset);
        if (*count >= o->max) {
            jn_errorf(err, errlen, "at most %lld --%s", (long long)o->max, o->name);
            return JN_CLI_OPTS_INVALID;
        }
        ((const char **)(void *)field)[(*count)++] = value;
        return 0;
    case JN_CLI_OPT_INT:
        errno = 0;
        n = strtoll(value, &end, 10);
        if (*value == '\0' || *end != '\0' || errno != 0 || n < o->min || n > o->max) {
            jn_errorf(err, errlen, "--%s must be a whole number from %lld to %lld, got '%s'",
                      o->name, (long long)o->min, (long long)o->max, value);
            return JN_CLI_OPTS_INVALID;
        }
        *(int64_t *)(void *)field = n;
        return 0;
    case JN_CLI_OPT_HELP:
        return JN_CLI_OPTS_HELP;
    }
    return JN_CLI_OPTS_USAGE;
}

/* A long option at argv[*i] ("--" already skipped in text); *i moves past
 * its value when that is the next argument. */
static int opts_long(const jn_cli_opt_t *opts, int argc, char **argv, int *i, const char *text,
                     void *args, char *err, size_t errlen)
{
    const char *eq = strchr(text, '='), *value = NULL;
    size_t len = eq ? (size_t)(eq - text) : strlen(text);
    const jn_cli_opt_t *o = opts_find_long(opts, argv[0], text, len, err, errlen);

    if (o == NULL)
        return JN_CLI_OPTS_USAGE;
    if (o->kind == JN_CLI_OPT_FLAG || o->kind == JN_CLI_OPT_HELP) {
        if (eq != NULL)
            return opts_usage_error(err, errlen, "%s: option '--%s' doesn't allow an argument",
                                    argv[0], o->name);
    } else if (eq != NULL) {
        value = eq + 1;
    } else if (*i + 1 < argc) {
        /* as getopt_long: the next argument is the value, even "-x" */
        value = argv[++*i];
    } else {
        return opts_usage_error(err, errlen, "%s: option '--%s' requires an argument", argv[0],
                                o->name);
    }
    return opts_store(o, value, args, err, errlen);
}

/* Short options at argv[*i] ("-" already skipped in text): flags may be
 * grouped (-ab); a value is the rest of the word or the next argument. */
static int opts_short(const jn_cli_opt_t *opts, int argc, char **argv, int *i, const char *text,
                      void *args, char *err, size_t errlen)
{
    const jn_cli_opt_t *o;
    const char *value;
    int rc;

    for (; *text != '\0'; text++) {
        if ((o = opts_find_letter(opts, *text)) == NULL)
            return opts_usage_error(err, errlen, "%s: invalid option -- '%c'", argv[0], *text);
        if (o->kind == JN_CLI_OPT_FLAG || o->kind == JN_CLI_OPT_HELP) {
            if ((rc = opts_store(o, NULL, args, err, errlen)) != 0)
                return rc;
            continue;
        }
        if (text[1] != '\0')
            value = text + 1;
        else if (*i + 1 < argc)
            value = argv[++*i];
        else
            return opts_usage_error(err, errlen, "%s: option requires an argument -- '%c'", argv[0],
                                    *text);
        return opts_store(o, value, args, err, errlen);
    }
    return 0;
}

int jn_cli_opts_parse(const jn_cli_opt_t *opts, int argc, char **argv, void *args, char *err,
                      size_t errlen)
{
    char **operands;
    int i, nopt = 1, nops = 0, start, rc = 0;

    if (err != NULL && errlen > 0)
        *err = '\0';
    if (argc <= 1)
        return argc < 1 ? 0 : 1;
    /* operands are moved behind the options, in their order, as
     * getopt_long permutes argv, so that callers read argv[first..argc) */
    operands = malloc(sizeof(*operands) * (size_t)argc);
    if (operands == NULL) {
        jn_errorf(err, errlen, "out of memory");
        return JN_CLI_OPTS_INVALID;
    }
    for (i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--") == 0) {
            argv[nopt++] = argv[i];
            while (++i < argc)
                operands[nops++] = argv[i];
            break;
        }
        if (a[0] != '-' || a[1] == '\0') {
            operands[nops++] = argv[i];
            continue;
        }
        start = i;
        if (a[1] == '-')
            rc = opts_long(opts, argc, argv, &i, a + 2, args, err, errlen);
        else
            rc = opts_short(opts, argc, argv, &i, a + 1, args, err, errlen);
        while (start <= i)
            argv[nopt++] = argv[start++];
    }
    /* also after an error argv stays a permutation of what it was */
    memcpy(argv + nopt, operands, sizeof(*operands) * (size_t)nops);
    free(operands);
    return rc == 0 ? nopt : rc;
}

void jn_cli_opts_print_error(int rc, const char *err)
{
    if (rc == JN_CLI_OPTS_INVALID)
        fprintf(stderr, "junction: %s\n", err);
    else if (rc == JN_CLI_OPTS_USAGE)
        fprintf(stderr, "%s\n", err);
}

int jn_cli_parse_show_args(const jn_cli_opt_t *opts, int argc, char **argv, void *args,
                           const char **operand, const char *const *format, int *json)
{
    char err[512];
    int first = jn_cli_opts_parse(opts, argc, argv, args, err, sizeof(err));

    if (first == JN_CLI_OPTS_HELP)
        return 1;
    if (first < 0) {
        jn_cli_opts_print_error(first, err);
        return first == JN_CLI_OPTS_USAGE ? -1 : -2;
    }
    if (first < argc)
        *operand = argv[first++];
    if (first < argc) {
        fprintf(stderr, "junction: unexpected argument '%s'\n\n", argv[first]);
        return -1;
    }
    if (*format != NULL && strcmp(*format, "table") != 0 && strcmp(*format, "json") != 0) {
        fprintf(stderr, "junction: --format must be table or json, got '%s'\n", *format);
        return -2;
    }
    *json = *format != NULL && strcmp(*format, "json") == 0;
    return 0;
}

void jn_cli_opts_usage(FILE *out, const jn_cli_opt_t *opts, int width)
{
    const jn_cli_opt_t *o;
    const char *help, *nl;
    char head[128];

    for (o = opts; o->name != NULL; o++) {
        if (o->help == NULL)
            continue;
        snprintf(head, sizeof(head), "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(out, "  %-*s ", width, head);
        for (help = o->help; (nl = strchr(help, '\n')) != NULL; help = nl + 1)
            fprintf(out, "%.*s\n  %-*s ", (int)(nl - help), help, width, "");
        fprintf(out, "%s\n", help);
    }
}
