/* junction health: the health of every integration, as a table.
 *
 * Health lives in the memory of the running runtime (its monitor is fed by
 * the requests and jobs it runs), so this command asks that runtime's API
 * (GET /v1/health) rather than a store snapshot: the answer is as fresh as
 * the API's, it needs no table written every few seconds, and the API's
 * organization scoping applies unchanged to an organization token.
 *
 * Where: --url, else http://<listen> from the config (an unspecified address
 * such as 0.0.0.0 is reached on loopback). Who: --token-file (an organization
 * or admin token, a 0600 file), else the admin token of the config
 * (api_admin_token_file) or JUNCTION_API_ADMIN_TOKEN.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "cli.h"
#include "json_canon.h"
#include "junction/json.h"
#include "junction/redact.h"
#include "junction/secmem.h"

#define TOKEN_MAX 512

static const char health_usage[] =
    "usage: junction health [--org ID] [--provider P] [--json] [--url URL]\n"
    "                       [--token-file FILE] [--config FILE]\n"
    "\n"
    "Prints the health of every integration the token may see, from the running\n"
    "runtime's API (GET /v1/health): status, success rate, requests and errors over\n"
    "the last hour, average latency, breaker and rate-limit state, last sync.\n"
    "\n"
    "  --org ID          only this organization\n"
    "  --provider P      only this provider\n"
    "  --json            the API's JSON document instead of the table\n"
    "  --url URL         the API's base URL (default: http://<listen> of the config)\n"
    "  --token-file FILE a token (mode 0600); default: the config's admin token\n"
    "                    (api_admin_token_file) or JUNCTION_API_ADMIN_TOKEN\n";

/* The first line of a 0600 regular file into locked memory, registered with
 * the redactor. NULL after printing why. */
static char *read_token_file(const char *path, const char *what)
{
    char buf[TOKEN_MAX + 2], *tok;
    struct stat st;
    ssize_t n;
    size_t len;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0) {
        fprintf(stderr, "junction health: %s '%s': %s\n", what, path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) != 0) {
        close(fd);
        fprintf(stderr,
                "junction health: %s '%s' must be a regular file of mode 0600 (run 'chmod 600 "
                "%s')\n",
                what, path, path);
        return NULL;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0) {
        fprintf(stderr, "junction health: %s '%s': %s\n", what, path, strerror(errno));
        return NULL;
    }
    buf[n] = '\0';
    len = strcspn(buf, "\r\n");
    if (len == 0 || len > TOKEN_MAX) {
        memset(buf, 0, sizeof(buf));
        fprintf(stderr, "junction health: %s '%s' holds no token on its first line\n", what, path);
        return NULL;
    }
    tok = jn_secmem_alloc(len + 1);
    if (tok != NULL) {
        memcpy(tok, buf, len);
        tok[len] = '\0';
        jn_redactor_add_secret(jn_redactor_global(), tok, len);
    }
    memset(buf, 0, sizeof(buf));
    return tok;
}

static char *token_from_env(void)
{
    const char *env = getenv("JUNCTION_API_ADMIN_TOKEN");
    size_t len;
    char *tok;

    if (env == NULL || *env == '\0')
        return NULL;
    len = strcspn(env, "\r\n");
    if (len == 0 || len > TOKEN_MAX)
        return NULL;
    tok = jn_secmem_alloc(len + 1);
    if (tok != NULL) {
        memcpy(tok, env, len);
        tok[len] = '\0';
        jn_redactor_add_secret(jn_redactor_global(), tok, len);
    }
    return tok;
}

/* http://<listen>, an unspecified address replaced by loopback. */
static int base_url(const jn_config_t *cfg, char *out, size_t len)
{
    const char *listen = jn_config_str(cfg, "listen");
    const char *colon = strrchr(listen, ':');

    if (colon == NULL || atoi(colon + 1) <= 0) {
        fprintf(stderr,
                "junction health: the config's listen '%s' names no port; pass --url "
                "http://HOST:PORT\n",
                listen);
        return -1;
    }
    if (strncmp(listen, "0.0.0.0:", 8) == 0 || listen[0] == ':')
        snprintf(out, len, "http://127.0.0.1%s", colon);
    else if (strncmp(listen, "[::]:", 5) == 0)
        snprintf(out, len, "http://[::1]%s", colon);
    else
        snprintf(out, len, "http://%s", listen);
    return 0;
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    jn_buf_t *b = ud;

    if (b->len + size * n > 64u * 1024 * 1024)
        return 0; /* a health document that large is not one */
    return jn_buf_append(b, data, size * n) == 0 ? size * n : 0;
}

/* GET url with the token; 0 and the body, or -1 after printing why. */
static int fetch(const char *url, const char *token, jn_buf_t *body, long *status)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char *auth = NULL, errbuf[CURL_ERROR_SIZE] = "";
    size_t alen = token ? strlen(token) + sizeof("Authorization: Bearer ") : 0;
    CURLcode rc;

    if (c == NULL)
        return -1;
    if (token != NULL && (auth = jn_secmem_alloc(alen)) != NULL) {
        snprintf(auth, alen, "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(h);
    if (auth != NULL)
        jn_secmem_free(auth);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        fprintf(stderr, "junction health: cannot reach the runtime's API at %s: %s\n", url,
                errbuf[0] ? errbuf : curl_easy_strerror(rc));
        return -1;
    }
    return 0;
}

static const char *str_of(const jn_json_t *obj, const char *name, const char *dflt)
{
    const char *s = jn_json_string(jn_json_get(obj, name), NULL);
    return s ? s : dflt;
}

/* "12.5%", "-" when null */
static void fmt_pct(char *out, size_t len, const jn_json_t *v)
{
    double d;

    if (v == NULL || jn_json_number(v, &d) != 0)
        snprintf(out, len, "-");
    else
        snprintf(out, len, "%.1f%%", d * 100);
}

static void print_table(const jn_json_t *root)
{
    const jn_json_t *list = jn_json_get(root, "integrations");
    size_t n = jn_json_count(list);

    printf("%-16s %-24s %-12s %-10s %8s %6s %6s %9s %-9s %-9s %s\n", "ORGANIZATION", "INTEGRATION",
           "PROVIDER", "STATUS", "SUCCESS", "REQ", "ERR", "LATENCY", "BREAKER", "RATE",
           "LAST SYNC");
    for (const jn_json_t *it = jn_json_first(list); it != NULL; it = jn_json_next(it)) {
        char rate[16], lat[24];
        double d;
        int64_t req = 0, errs = 0;
        const jn_json_t *sync = jn_json_get(it, "last_sync");
        const jn_json_t *rl = jn_json_get(it, "rate_limit");
        char last[80];

        fmt_pct(rate, sizeof(rate), jn_json_get(it, "success_rate_1h"));
        if (jn_json_number(jn_json_get(it, "avg_latency_ms"), &d) == 0)
            snprintf(lat, sizeof(lat), "%.0fms", d);
        else
            snprintf(lat, sizeof(lat), "-");
        jn_json_int64(jn_json_get(it, "requests_1h"), &req);
        jn_json_int64(jn_json_get(it, "errors_1h"), &errs);
        if (sync != NULL && jn_json_is_object(sync))
            snprintf(last, sizeof(last), "%s %s", str_of(sync, "status", "?"),
                     str_of(sync, "finished_at", "(running)"));
        else
            snprintf(last, sizeof(last), "never");
        printf("%-16s %-24s %-12s %-10s %8s %6lld %6lld %9s %-9s %-9s %s\n",
               str_of(it, "organization_id", "?"), str_of(it, "integration_id", "?"),
               str_of(it, "provider", "?"), str_of(it, "status", "?"), rate, (long long)req,
               (long long)errs, lat, str_of(it, "breaker", "?"),
               rl ? str_of(rl, "state", "?") : "?", last);
        /* the newest error, already redacted by the runtime */
        for (const jn_json_t *e = jn_json_first(jn_json_get(it, "recent_errors")); e != NULL;
             e = NULL)
            printf("%-16s   last error %s [%s] %s\n", "", str_of(e, "at", "?"),
                   str_of(e, "class", "?"), str_of(e, "message", ""));
    }
    if (n == 0)
        printf("(no integration)\n");
}

/* Appends ?name=value&... percent-encoded. */
static void add_query(CURL *c, char *url, size_t len, const char *name, const char *value,
                      int *first)
{
    char *enc;
    size_t used = strlen(url);

    if (value == NULL)
        return;
    enc = curl_easy_escape(c, value, 0);
    if (enc == NULL)
        return;
    snprintf(url + used, len - used, "%s%s=%s", *first ? "?" : "&", name, enc);
    *first = 0;
    curl_free(enc);
}

typedef struct {
    const char *org, *provider, *url, *token_file, *conf;
    int json;
} health_args_t;

static const jn_cli_opt_t health_opts[] = {JN_CLI_STR(health_args_t, "org", org),
                                           JN_CLI_STR(health_args_t, "provider", provider),
                                           JN_CLI_STR(health_args_t, "url", url),
                                           JN_CLI_STR(health_args_t, "token-file", token_file),
                                           JN_CLI_STR(health_args_t, "config", conf),
                                           JN_CLI_FLAG(health_args_t, "json", json),
                                           {"help", 'h', JN_CLI_OPT_HELP, 0, 0, 0, 0, NULL, NULL},
                                           JN_CLI_END};

int jn_cli_health(int argc, char **argv)
{
    health_args_t a = {0};
    const char *org, *provider, *url, *token_file, *conf;
    int as_json, first = 1, rc = 1, n;
    char base[512], full[1200], err[512];
    jn_config_t *cfg = NULL;
    char *token = NULL;
    jn_buf_t body = {0};
    jn_json_t *root = NULL;
    long status = 0;
    CURL *esc;

    n = jn_cli_opts_parse(health_opts, argc, argv, &a, err, sizeof(err));
    if (n == JN_CLI_OPTS_HELP) {
        fputs(health_usage, stdout);
        return 0;
    }
    if (n < 0 || n < argc) {
        if (n < 0)
            jn_cli_opts_print_error(n, err);
        else
            fprintf(stderr, "junction health: unexpected argument '%s'\n", argv[n]);
        fprintf(stderr, "\n%s", health_usage);
        return 2;
    }
    org = a.org;
    provider = a.provider;
    url = a.url;
    token_file = a.token_file;
    conf = a.conf;
    as_json = a.json;
    if ((cfg = jn_cli_load_config(conf)) == NULL)
        return 2;
    if (url != NULL) {
        if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
            fprintf(stderr, "junction health: --url must start with http:// or https://\n");
            rc = 2;
            goto done;
        }
        snprintf(base, sizeof(base), "%s", url);
    } else if (base_url(cfg, base, sizeof(base)) != 0) {
        rc = 2;
        goto done;
    }
    if (token_file != NULL) {
        token = read_token_file(token_file, "--token-file");
    } else {
        const char *admin = jn_config_str(cfg, "api_admin_token_file");
        token = admin && *admin ? read_token_file(admin, "api_admin_token_file") : token_from_env();
        if (token == NULL && !(admin && *admin))
            fprintf(stderr, "junction health: no token: pass --token-file, or set "
                            "api_admin_token_file or JUNCTION_API_ADMIN_TOKEN\n");
    }
    if (token == NULL) {
        rc = 2;
        goto done;
    }
    while (base[0] && base[strlen(base) - 1] == '/')
        base[strlen(base) - 1] = '\0';
    snprintf(full, sizeof(full), "%s/v1/health", base);
    if ((esc = curl_easy_init()) != NULL) {
        add_query(esc, full, sizeof(full), "org", org, &first);
        add_query(esc, full, sizeof(full), "provider", provider, &first);
        curl_easy_cleanup(esc);
    }
    if (fetch(full, token, &body, &status) != 0)
        goto done;
    if (status != 200) {
        char *clean =
            jn_redactor_scrub_dup(jn_redactor_global(), body.data ? body.data : "", body.len);
        fprintf(stderr, "junction health: %s answered %ld: %s\n", full, status, clean ? clean : "");
        free(clean);
        rc = status == 401 || status == 403 ? 2 : 1;
        goto done;
    }
    if (as_json) {
        fwrite(body.data, 1, body.len, stdout);
        fputc('\n', stdout);
        rc = 0;
        goto done;
    }
    if (jn_json_parse(body.data ? body.data : "", body.len, NULL, &root, NULL) != 0 ||
        !jn_json_is_array(jn_json_get(root, "integrations"))) {
        fprintf(stderr, "junction health: %s did not answer a health document\n", full);
        goto done;
    }
    print_table(root);
    rc = 0;
done:
    jn_json_free(root);
    jn_buf_free(&body);
    if (token != NULL) {
        jn_redactor_remove_secret(jn_redactor_global(), token, strlen(token));
        jn_secmem_free(token);
    }
    jn_config_destroy(cfg);
    return rc;
}
