#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
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
