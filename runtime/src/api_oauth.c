/* The OAuth connect flow (authorization code with PKCE, RFC 6749 + 7636).
 *
 *   GET /v1/oauth/{provider}/authorize?integration_id=ID   (write token)
 *       302 to the provider's authorize URL with state and an S256 challenge.
 *   GET /v1/oauth/{provider}/callback?code=...&state=...   (the browser)
 *       exchanges the code at the token URL and stores the refresh token as an
 *       oauth2 credential of the integration's organization, which becomes the
 *       integration's credential; its collections then refresh with it.
 *
 * The state is
 *   base64url(JSON {o: org, i: integration, p: provider, c: client_id,
 *                   e: expiry ms, n: nonce}) "."
 *   base64url(HMAC-SHA256(key, that JSON))
 * and the PKCE verifier is derived from the nonce with the same key, so only
 * this server can produce either, a state is bound to one organization,
 * integration, provider and client, and it expires after 10 minutes. The key
 * is derived from the admin token (processes sharing it share the flow);
 * without an admin token it is random per process.
 *
 * A state is good for one callback. The process remembers the nonces it saw
 * until they expire (a second callback, e.g. a reload of the page, is refused
 * before the code goes anywhere: presenting a code twice makes a provider
 * revoke what it issued for it), and the credential's metadata records its
 * nonce, so a state that completed is refused by any process on the store,
 * also after a restart. The integration is checked again at the callback:
 * gone, moved to another organization or provider, nothing is exchanged.
 *
 * The client (client_id, client_secret or private_key, authorize_url,
 * token_url, scopes, redirect_uri) is the organization's oauth_client
 * credential for the provider, else the platform default (the oauth_client of
 * organization _platform), else api_oauth_clients_file. With a stored client
 * the new oauth2 credential names no client (it binds the same client when it
 * refreshes, so a rotated client secret applies); with the file's it carries
 * the client. URLs a stored client leaves out come from the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api_internal.h"
#include "cli.h"
#include "junction/auth.h"
#include "junction/clock.h"
#include "junction/crypto.h"
#include "junction/error.h"
#include "junction/http_client.h"
#include "junction/jwt.h"
#include "junction/log.h"
#include "junction/net.h"
#include "junction/redact.h"
#include "junction/secmem.h"

#define STATE_TTL_MS (10 * 60 * 1000)
#define EXCHANGE_TIMEOUT_MS 15000
#define CLIENTS_MAX (256 * 1024)
#define PARAM_MAX 4096    /* code and state as the provider returns them */
#define USED_MAX 65536    /* states seen in the last 10 minutes */
#define ASSERTION_TTL 300 /* seconds: private_key_jwt client assertions */

typedef struct used_state {
    struct used_state *next;
    int64_t expires_ms;
    char nonce[33];
} used_state_t;

typedef struct exchange exchange_t;

struct api_oauth {
    uint8_t key[JN_SHA256_LEN];
    jn_json_t *clients; /* api_oauth_clients_file; NULL: none */
    used_state_t *used; /* newest first */
    size_t nused;
    exchange_t *exchanges; /* in flight, cancelled when the API goes */
};

/* ---- encodings ------------------------------------------------------------ */

static char *b64url(const uint8_t *in, size_t len)
{
    char *out = NULL;
    size_t n, i, o = 0;

    if (jn_base64_encode(in, len, &out, &n) != 0)
        return NULL;
    for (i = 0; i < n; i++) {
        if (out[i] == '=')
            break;
        out[o++] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    }
    out[o] = '\0';
    return out;
}

static void url_encode(jn_buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char esc[3];

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            strchr("-._~", c)) {
            jn_buf_append(b, (const char *)&c, 1);
        } else {
            esc[0] = '%';
            esc[1] = hex[c >> 4];
            esc[2] = hex[c & 15];
            jn_buf_append(b, esc, 3);
        }
    }
}

static void form(jn_buf_t *b, const char *name, const char *value)
{
    if (value == NULL)
        return;
    if (b->len)
        jn_buf_puts(b, "&");
    url_encode(b, name);
    jn_buf_puts(b, "=");
    url_encode(b, value);
}

static void wipe_buf(jn_buf_t *b)
{
    if (b->data)
        memset(b->data, 0, b->len);
    jn_buf_free(b);
}

/* An OAuth error code as the provider sent it, if it is one (RFC 6749 section
 * 4.1.2.1: printable ASCII without '"' and '\'); else "(unreadable)". Quoted
 * in answers and logs: a code, never a description or other text. */
static const char *error_code(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > 64)
        return "(unreadable)";
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return "(unreadable)";
    return s;
}

/* ---- set-up ------------------------------------------------------------------ */

static int load_clients(api_oauth_t *o, const char *path, char *err, size_t errlen)
{
    struct stat st;
    char *text;
    ssize_t n;
    jn_json_error_t je;
    int fd;

    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return jn_errorf(err, errlen, "api_oauth_clients_file '%s': %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > CLIENTS_MAX) {
        close(fd);
        return jn_errorf(err, errlen,
                         "api_oauth_clients_file '%s' is not a regular file of at most 256 KiB",
                         path);
    }
    if (st.st_mode & 077) {
        close(fd);
        return jn_errorf(err, errlen,
                         "api_oauth_clients_file '%s' has mode %04o: other users can read it; "
                         "run 'chmod 600 %s'",
                         path, (unsigned)(st.st_mode & 07777), path);
    }
    text = jn_secmem_alloc((size_t)st.st_size + 1);
    n = text ? read(fd, text, (size_t)st.st_size) : -1;
    close(fd);
    if (n < 0) {
        jn_secmem_free(text);
        return jn_errorf(err, errlen, "api_oauth_clients_file '%s': cannot read it", path);
    }
    if (jn_json_parse(text, (size_t)n, NULL, &o->clients, &je) != 0 ||
        !jn_json_is_object(o->clients)) {
        jn_secmem_free(text);
        return jn_errorf(err, errlen,
                         "api_oauth_clients_file '%s': expected a JSON object of providers (%s)",
                         path, o->clients ? "not an object" : je.message);
    }
    jn_secmem_free(text);
    for (const jn_json_t *m = jn_json_first(o->clients); m; m = jn_json_next(m)) {
        static const char *const need[] = {"client_id", "authorize_url", "token_url", NULL};
        static const char *const known[] = {
            "client_id", "client_secret", "authorize_url", "token_url",
            "scope",     "scopes",        "redirect_uri",  NULL};
        if (!jn_json_is_object(m))
            return jn_errorf(err, errlen, "api_oauth_clients_file '%s': %s: expected an object",
                             path, jn_json_name(m, NULL));
        for (size_t i = 0; need[i]; i++)
            if (!jn_json_is_string(jn_json_get(m, need[i])))
                return jn_errorf(err, errlen,
                                 "api_oauth_clients_file '%s': %s.%s: expected a string", path,
                                 jn_json_name(m, NULL), need[i]);
        for (const jn_json_t *f = jn_json_first(m); f; f = jn_json_next(f)) {
            size_t k;
            for (k = 0; known[k] && strcmp(known[k], jn_json_name(f, NULL)) != 0; k++)
                ;
            if (known[k] == NULL || !jn_json_is_string(f))
                return jn_errorf(err, errlen, "api_oauth_clients_file '%s': %s.%.64s: %s", path,
                                 jn_json_name(m, NULL), jn_json_name(f, NULL),
                                 known[k] ? "expected a string"
                                          : "unknown member (client_id, client_secret, "
                                            "authorize_url, token_url, scope, redirect_uri)");
        }
        if (jn_json_is_string(jn_json_get(m, "client_secret"))) {
            size_t sl;
            const char *sec = jn_json_string(jn_json_get(m, "client_secret"), &sl);
            jn_redactor_add_secret(jn_redactor_global(), sec, sl);
        }
    }
    return 0;
}

int api_oauth_init(jn_api_t *api, char *err, size_t errlen)
{
    const char *path = jn_config_str(api->o.cfg, "api_oauth_clients_file");
    api_oauth_t *o = calloc(1, sizeof(*o));

    if (o == NULL)
        return jn_errorf(err, errlen, "out of memory");
    api->oauth = o;
    if (api->admin_token != NULL) {
        static const char label[] = "junction oauth state v1";
        jn_hmac_sha256(api->admin_token, api->admin_token_len, label, sizeof(label) - 1, o->key);
    } else if (jn_random_bytes(o->key, sizeof(o->key)) != 0) {
        return jn_errorf(err, errlen, "no random bytes for the OAuth state key");
    }
    if (path != NULL && *path != '\0')
        return load_clients(o, path, err, errlen);
    return 0;
}

/* ---- states seen ------------------------------------------------------------------ */

/* Records the nonce as used: 0, 1 when it was already, -1 when too many
 * flows are in progress to remember another. */
static int state_use(api_oauth_t *o, const char *nonce, int64_t expires_ms, int64_t now)
{
    used_state_t **pp = &o->used, *u;

    while ((u = *pp) != NULL) {
        if (u->expires_ms < now) {
            *pp = u->next;
            free(u);
            o->nused--;
            continue;
        }
        if (strcmp(u->nonce, nonce) == 0)
            return 1;
        pp = &u->next;
    }
    if (o->nused >= USED_MAX || (u = calloc(1, sizeof(*u))) == NULL)
        return -1;
    u->expires_ms = expires_ms;
    snprintf(u->nonce, sizeof(u->nonce), "%s", nonce);
    u->next = o->used;
    o->used = u;
    o->nused++;
    return 0;
}

typedef struct {
    const char *nonce;
    int found;
} nonce_find_t;

static int nonce_cb(void *ud, const jn_credential_info_t *info)
{
    nonce_find_t *f = ud;
    jn_json_t *m = NULL;
    const char *n;

    if (info->metadata_json == NULL || strstr(info->metadata_json, f->nonce) == NULL ||
        jn_json_parse(info->metadata_json, strlen(info->metadata_json), NULL, &m, NULL) != 0)
        return 0;
    n = jn_json_string(jn_json_get(m, "connect_nonce"), NULL);
    f->found |= n != NULL && strcmp(n, f->nonce) == 0;
    jn_json_free(m);
    return f->found;
}

/* ---- the client ----------------------------------------------------------------- */

typedef struct {
    char *client_id, *client_secret, *private_key, *authorize_url, *token_url, *scope,
        *redirect_uri;
    int stored;      /* an oauth_client credential (the org's or the platform's) */
    int url_in_file; /* token_url came from the file: the new credential names it */
} client_t;

static void free_secret(char *s)
{
    if (s) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

static void client_clear(client_t *c)
{
    free(c->client_id);
    free_secret(c->client_secret);
    free_secret(c->private_key);
    free(c->authorize_url);
    free(c->token_url);
    free(c->scope);
    free(c->redirect_uri);
    memset(c, 0, sizeof(*c));
}

static void take(char **field, const jn_json_t *o, const char *name)
{
    const char *s = jn_json_string(jn_json_get(o, name), NULL);

    if (*field == NULL && s != NULL && *s != '\0')
        *field = strdup(s);
}

/* The client for (org, provider): 0, or -1 with the answer's status, code and
 * message in st/code/msg. */
static int client_for(jn_api_t *api, const char *org, const char *provider, client_t *c, int *st,
                      const char **code, char *msg, size_t msglen)
{
    jn_vault_t *v = api_vault(api);
    const jn_json_t *conf = api->oauth->clients ? jn_json_get(api->oauth->clients, provider) : NULL;
    const char *corg = NULL;
    char cid[JN_CLI_ID_MAX + 1], verr[512];
    jn_secret_t doc = {0};
    jn_json_t *d = NULL;
    int rc = 0;

    memset(c, 0, sizeof(*c));
    if (v != NULL)
        rc = jn_cli_oauth_client_of(v, org, provider, &corg, cid, verr, sizeof(verr));
    if (rc < 0) {
        jn_log_error("oauth: %s: the organization's OAuth client: %s", provider, verr);
        *st = 503, *code = "unavailable";
        snprintf(msg, msglen, "the organization's OAuth client cannot be read; try again");
        return -1;
    }
    if (rc == 1) {
        if (jn_vault_get(v, corg, cid, "api:oauth-connect", &doc) != 0 ||
            jn_json_parse((const char *)doc.data, doc.len, NULL, &d, NULL) != 0) {
            jn_log_error("oauth: %s: oauth_client %s of %s: %s", provider, cid, corg,
                         d ? "not JSON" : jn_vault_errmsg(v));
            jn_secret_free(&doc);
            *st = 503, *code = "unavailable";
            snprintf(msg, msglen, "the organization's OAuth client cannot be read; try again");
            return -1;
        }
        c->stored = 1;
        take(&c->client_id, d, "client_id");
        take(&c->client_secret, d, "client_secret");
        take(&c->private_key, d, "private_key");
        take(&c->authorize_url, d, "authorize_url");
        take(&c->token_url, d, "token_url");
        take(&c->scope, d, "scopes");
        take(&c->redirect_uri, d, "redirect_uri");
        jn_json_free(d);
        jn_secret_free(&doc);
    }
    if (conf != NULL) {
        if (c->client_id == NULL) {
            take(&c->client_id, conf, "client_id");
            take(&c->client_secret, conf, "client_secret");
            take(&c->scope, conf, "scope");
            take(&c->scope, conf, "scopes");
            take(&c->redirect_uri, conf, "redirect_uri");
        }
        take(&c->authorize_url, conf, "authorize_url");
        c->url_in_file = c->token_url == NULL;
        take(&c->token_url, conf, "token_url");
    }
    if (c->client_id != NULL && c->authorize_url != NULL && c->token_url != NULL)
        return 0;
    *st = 400, *code = "oauth_not_configured";
    snprintf(msg, msglen,
             c->client_id == NULL
                 ? "no OAuth client for provider '%s': store an oauth_client credential for it "
                   "(the organization's, or organization _platform's), or configure one in "
                   "api_oauth_clients_file"
                 : "the OAuth client for provider '%s' names no %s: add it to its oauth_client "
                   "credential or to api_oauth_clients_file",
             provider, c->authorize_url == NULL ? "authorize_url" : "token_url");
    client_clear(c);
    return -1;
}

static void redirect_uri(jn_api_t *api, const client_t *c, const char *provider, char *buf,
                         size_t len)
{
    const char *base = jn_config_str(api->o.cfg, "api_public_url");
    size_t n;

    if (c->redirect_uri != NULL) {
        snprintf(buf, len, "%s", c->redirect_uri);
    } else if (base != NULL && *base != '\0') {
        n = strlen(base);
        snprintf(buf, len, "%.*s/v1/oauth/%s/callback", (int)(n && base[n - 1] == '/' ? n - 1 : n),
                 base, provider);
    } else {
        snprintf(buf, len, "http://%s/v1/oauth/%s/callback", jn_config_str(api->o.cfg, "listen"),
                 provider);
    }
}

static char *verifier_for(const api_oauth_t *o, const char *nonce)
{
    uint8_t mac[JN_SHA256_LEN];
    char in[128];

    snprintf(in, sizeof(in), "pkce:%s", nonce);
    jn_hmac_sha256(o->key, sizeof(o->key), in, strlen(in), mac);
    return b64url(mac, sizeof(mac));
}

static int accepts_oauth2(const jn_connector_t *conn)
{
    jn_json_t *meta = NULL;
    int ok = 0;

    if (conn->metadata_json == NULL ||
        jn_json_parse(conn->metadata_json, strlen(conn->metadata_json), NULL, &meta, NULL) != 0)
        return 0;
    for (const jn_json_t *m = jn_json_first(jn_json_get(meta, "auth_types")); m && !ok;
         m = jn_json_next(m))
        ok = jn_json_is_string(m) && strcmp(jn_json_string(m, NULL), "oauth2") == 0;
    jn_json_free(meta);
    return ok;
}

/* ---- authorize ------------------------------------------------------------------- */

static void oauth_authorize(api_req_t *r)
{
    jn_api_t *api = r->api;
    const char *provider = jn_http_req_param(r->req, "provider"), *code;
    char iid[160], *strings = NULL, nonce[33], num[32], redirect[1024], msg[512];
    char *payload_b64 = NULL, *mac_b64 = NULL, *verifier = NULL, *challenge = NULL;
    uint8_t mac[JN_SHA256_LEN], digest[JN_SHA256_LEN];
    jn_buf_t payload = {0}, state = {0}, url = {0}, q = {0}, body = {0};
    api_provider_t *p = api_provider(api, provider);
    jn_integration_t it;
    client_t c = {0};
    int rc, st;

    if (!r->who.write) {
        api_error(r, 403, "forbidden", "connecting an integration needs a write token");
        return;
    }
    if (api_query(r, "integration_id", iid, sizeof(iid)) == NULL || iid[0] == '\0') {
        api_invalid(r, "integration_id", "the id of the integration to connect",
                    "integration_id is required");
        return;
    }
    rc = jn_store_integration_get(api->o.store, iid, &it, &strings);
    if (rc < 0) {
        api_error(r, 503, "unavailable", "the store cannot be read; try again");
        return;
    }
    if (rc > 0 || !api_may_see(r, it.organization_id) || strcmp(it.provider, provider) != 0) {
        free(strings);
        api_not_found(r, "integration");
        return;
    }
    if (p == NULL || !accepts_oauth2(p->conn)) {
        free(strings);
        api_error(r, 400, "oauth_not_supported", "the connector for provider '%s' %s", provider,
                  p == NULL ? "is not loaded" : "does not accept oauth2 credentials (auth_types)");
        return;
    }
    if (client_for(api, it.organization_id, provider, &c, &st, &code, msg, sizeof(msg)) != 0) {
        free(strings);
        api_error(r, st, code, "%s", msg);
        return;
    }
    if (jn_random_id(nonce) != 0) {
        client_clear(&c);
        free(strings);
        api_error(r, 503, "unavailable", "no random bytes for the state; try again");
        return;
    }
    snprintf(num, sizeof(num), "%" PRId64, api_now_ms(api) + STATE_TTL_MS);
    jn_buf_puts(&payload, "{\"o\":");
    buf_str(&payload, it.organization_id);
    jn_buf_puts(&payload, ",\"i\":");
    buf_str(&payload, it.id);
    jn_buf_puts(&payload, ",\"p\":");
    buf_str(&payload, provider);
    jn_buf_puts(&payload, ",\"c\":");
    buf_str(&payload, c.client_id);
    jn_buf_puts(&payload, ",\"e\":");
    jn_buf_puts(&payload, num);
    jn_buf_puts(&payload, ",\"n\":\"");
    jn_buf_puts(&payload, nonce);
    jn_buf_puts(&payload, "\"}");
    jn_hmac_sha256(api->oauth->key, sizeof(api->oauth->key), payload.data, payload.len, mac);
    payload_b64 = b64url((const uint8_t *)payload.data, payload.len);
    mac_b64 = b64url(mac, sizeof(mac));
    verifier = verifier_for(api->oauth, nonce);
    if (verifier)
        jn_sha256(verifier, strlen(verifier), digest);
    challenge = verifier ? b64url(digest, sizeof(digest)) : NULL;
    if (payload_b64 == NULL || mac_b64 == NULL || challenge == NULL) {
        api_error(r, 503, "unavailable", "out of memory");
        goto done;
    }
    jn_buf_puts(&state, payload_b64);
    jn_buf_puts(&state, ".");
    jn_buf_puts(&state, mac_b64);
    redirect_uri(api, &c, provider, redirect, sizeof(redirect));
    jn_buf_puts(&url, c.authorize_url);
    jn_buf_puts(&url, strchr(c.authorize_url, '?') ? "&" : "?");
    form(&q, "response_type", "code");
    form(&q, "client_id", c.client_id);
    form(&q, "redirect_uri", redirect);
    form(&q, "scope", c.scope);
    form(&q, "state", state.data);
    form(&q, "code_challenge", challenge);
    form(&q, "code_challenge_method", "S256");
    jn_buf_append(&url, q.data, q.len);
    jn_buf_puts(&body, "{\"authorize_url\":");
    buf_str(&body, url.data);
    jn_buf_puts(&body, "}");
    {
        jn_http_field_t h[3] = {{"Location", url.data},
                                {"Content-Type", "application/json"},
                                {"Cache-Control", "no-store"}};
        jn_http_respond(r->req, 302, h, 3, body.data, body.len);
        free(r);
    }
done:
    client_clear(&c);
    free(strings);
    free(payload_b64);
    free(mac_b64);
    free_secret(verifier);
    free(challenge);
    jn_buf_free(&payload);
    jn_buf_free(&state);
    jn_buf_free(&url);
    jn_buf_free(&q);
    jn_buf_free(&body);
}

/* ---- callback --------------------------------------------------------------------- */

struct exchange {
    exchange_t *next;
    jn_api_t *api;
    api_req_t *r;
    jn_http_call_t *call;
    char org[129], iid[129], provider[65], nonce[33];
    client_t c;
};

static void exchange_free(exchange_t *x)
{
    api_oauth_t *o = x->api->oauth;

    for (exchange_t **pp = o ? &o->exchanges : NULL; pp && *pp; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            break;
        }
    client_clear(&x->c);
    free(x);
}

void api_oauth_free(jn_api_t *api)
{
    api_oauth_t *o = api->oauth;

    if (o == NULL)
        return;
    while (o->exchanges != NULL) {
        exchange_t *x = o->exchanges;
        jn_http_call_cancel(x->call);
        api_error(x->r, 503, "unavailable", "the server is stopping; start again");
        exchange_free(x);
    }
    while (o->used != NULL) {
        used_state_t *u = o->used;
        o->used = u->next;
        free(u);
    }
    memset(o->key, 0, sizeof(o->key));
    jn_json_free(o->clients);
    free(o);
    api->oauth = NULL;
}

static int addr_port(const struct sockaddr *addr)
{
    if (addr->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)addr)->sin_port);
    if (addr->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
    return 0;
}

static int token_addr_policy(void *ud, const char *host, const struct sockaddr *addr)
{
    jn_runtime_t *rt = ud;

    if (jn_runtime_host_allowed(rt, host, addr_port(addr)))
        return 0;
    return jn_net_addr_is_public(addr) ? 0 : -1;
}

static void redact_member(const jn_json_t *root, const char *name)
{
    size_t n = 0;
    const char *s = jn_json_string(jn_json_get(root, name), &n);

    if (s != NULL && n > 0)
        jn_redactor_add_secret(jn_redactor_global(), s, n);
}

/* The oauth2 document: with a stored client, only what the client does not
 * hold (it is bound again when the credential refreshes). */
static void oauth2_document(const exchange_t *x, const char *refresh, size_t rl, jn_buf_t *doc)
{
    jn_buf_puts(doc, "{\"refresh_token\":");
    jn_json_append_string(doc, refresh, rl);
    if (!x->c.stored) {
        jn_buf_puts(doc, ",\"client_id\":");
        buf_str(doc, x->c.client_id);
        if (x->c.client_secret) {
            jn_buf_puts(doc, ",\"client_secret\":");
            buf_str(doc, x->c.client_secret);
        }
    }
    if (!x->c.stored || x->c.url_in_file) {
        jn_buf_puts(doc, ",\"token_url\":");
        buf_str(doc, x->c.token_url);
    }
    jn_buf_puts(doc, "}");
}

static void on_exchanged(jn_http_response_t *resp, void *ud)
{
    exchange_t *x = ud;
    api_req_t *r = x->r;
    jn_api_t *api = r->api;
    jn_json_t *root = NULL;
    const char *refresh;
    jn_buf_t doc = {0}, meta = {0}, b = {0};
    jn_integration_t it;
    char *strings = NULL, id[JN_VAULT_ID_LEN], perr[512];
    jn_vault_t *v = api_vault(api);
    jn_auth_t *check = NULL;
    size_t rl = 0;
    int parsed, rc;

    parsed = resp->error == JN_HTTP_OK && resp->body != NULL &&
             jn_json_parse(resp->body, resp->body_len, NULL, &root, NULL) == 0;
    if (parsed) {
        /* whatever came back is secret from now on, failure or not */
        redact_member(root, "access_token");
        redact_member(root, "refresh_token");
        redact_member(root, "id_token");
    }
    if (resp->error != JN_HTTP_OK || resp->status != 200 || !parsed) {
        const char *perror = parsed ? error_code(jn_json_string(jn_json_get(root, "error"), NULL))
                                    : "(no JSON answer)";
        jn_log_field_t f[] = {{"provider", x->provider, 0},
                              {"integration_id", x->iid, 0},
                              {"status", NULL, 0},
                              {"error", resp->error != JN_HTTP_OK ? resp->error_msg : perror, 0}};
        char status[16];
        snprintf(status, sizeof(status), "%ld", resp->status);
        f[2].value = status;
        jn_log_fields(JN_LOG_ERROR, "oauth connect: token exchange failed", f, 4);
        if (resp->error != JN_HTTP_OK)
            api_error(r, 502, "exchange_failed",
                      "the provider's token endpoint could not be reached (%s); start again",
                      jn_http_error_name(resp->error));
        else
            api_error(r, 502, "exchange_failed",
                      "the provider refused the authorization code: HTTP %ld, error %s; start "
                      "again",
                      resp->status, perror);
        goto done;
    }
    refresh = jn_json_string(jn_json_get(root, "refresh_token"), &rl);
    if (refresh == NULL || rl == 0) {
        api_error(r, 502, "no_refresh_token",
                  "the provider returned no refresh token (ask for offline access: the client's "
                  "scopes, or parameters in its authorize_url)");
        goto done;
    }
    oauth2_document(x, refresh, rl, &doc);
    /* the credential is checked as the runtime will read it */
    if (jn_auth_parse("oauth2", doc.data, doc.len, &check, perr, sizeof(perr)) != 0) {
        jn_log_error("oauth connect: %s: the new credential is not usable: %s", x->provider, perr);
        api_error(r, 502, "exchange_failed", "the provider's answer makes no usable credential");
        goto done;
    }
    jn_auth_free(check);
    jn_buf_puts(&meta, "{\"provider\":");
    buf_str(&meta, x->provider);
    jn_buf_puts(&meta, ",\"auth_type\":\"oauth2\",\"label\":\"oauth connect\",\"fields\":");
    jn_buf_puts(&meta, x->c.stored ? (x->c.url_in_file ? "[\"refresh_token\",\"token_url\"]"
                                                       : "[\"refresh_token\"]")
                       : x->c.client_secret
                           ? "[\"refresh_token\",\"client_id\",\"client_secret\",\"token_url\"]"
                           : "[\"refresh_token\",\"client_id\",\"token_url\"]");
    jn_buf_puts(&meta, ",\"connect_nonce\":");
    buf_str(&meta, x->nonce);
    jn_buf_puts(&meta, "}");
    if (v == NULL) {
        api_error(r, 503, "vault_unavailable", "the vault is not available");
        goto done;
    }
    rc = jn_vault_put(v, x->org, x->provider, "oauth2", doc.data, doc.len, meta.data,
                      "api:oauth-connect", id);
    if (rc != 0) {
        jn_log_error("oauth connect: cannot store the credential: %s", jn_vault_errmsg(v));
        api_error(r, 503, "unavailable", "the credential could not be stored; start again");
        goto done;
    }
    rc = jn_store_integration_get(api->o.store, x->iid, &it, &strings);
    if (rc == 0 && strcmp(it.organization_id, x->org) == 0) {
        it.credential_id = id;
        it.token_env = NULL;
        it.auth_scheme = NULL;
        rc = jn_store_integration_upsert(api->o.store, &it, NULL);
    }
    if (rc != 0) {
        jn_log_error("oauth connect: integration %s: %s", x->iid,
                     rc < 0 ? jn_store_errmsg(api->o.store) : "removed meanwhile");
        api_error(r, rc < 0 ? 503 : 409, rc < 0 ? "unavailable" : "integration_gone",
                  "credential %s was stored, but the integration could not be set to use it%s", id,
                  rc < 0 ? "; set credential_id with PATCH" : " (it was removed meanwhile)");
        goto done;
    }
    jn_buf_puts(&b, "{\"status\":\"connected\",\"integration_id\":");
    buf_str(&b, x->iid);
    jn_buf_puts(&b, ",\"credential_id\":");
    buf_str(&b, id);
    jn_buf_puts(&b, "}");
    api_json(r, 200, &b);
    {
        jn_log_field_t f[] = {{"provider", x->provider, 0},
                              {"organization_id", x->org, 0},
                              {"integration_id", x->iid, 0},
                              {"credential_id", id, 0}};
        jn_log_fields(JN_LOG_INFO, "oauth connect: connected", f, 4);
    }
done:
    wipe_buf(&doc);
    jn_buf_free(&meta);
    jn_buf_free(&b);
    free(strings);
    jn_json_free(root);
    jn_http_response_free(resp);
    exchange_free(x);
}

enum { STATE_OK = 0, STATE_FORGED, STATE_EXPIRED };

/* Checks the state's signature and expiry and reads it. */
static int state_check(jn_api_t *api, const char *state, exchange_t *x, char *client_id,
                       size_t client_len, int64_t *expires)
{
    const char *dot = strchr(state, '.');
    uint8_t *payload = NULL, *mac = NULL, want[JN_SHA256_LEN];
    size_t plen, mlen;
    jn_json_t *root = NULL;
    const char *s[5];
    int rc = STATE_FORGED;

    if (dot == NULL || jn_base64_decode(state, (size_t)(dot - state), &payload, &plen) != 0 ||
        jn_base64_decode(dot + 1, strlen(dot + 1), &mac, &mlen) != 0)
        goto done;
    jn_hmac_sha256(api->oauth->key, sizeof(api->oauth->key), payload, plen, want);
    if (mlen != sizeof(want) || !jn_ct_equal(mac, want, sizeof(want)))
        goto done;
    if (jn_json_parse((const char *)payload, plen, NULL, &root, NULL) != 0 ||
        jn_json_int64(jn_json_get(root, "e"), expires) != 0)
        goto done;
    s[0] = jn_json_string(jn_json_get(root, "o"), NULL);
    s[1] = jn_json_string(jn_json_get(root, "i"), NULL);
    s[2] = jn_json_string(jn_json_get(root, "p"), NULL);
    s[3] = jn_json_string(jn_json_get(root, "n"), NULL);
    s[4] = jn_json_string(jn_json_get(root, "c"), NULL);
    for (int i = 0; i < 5; i++)
        if (s[i] == NULL)
            goto done;
    if (strlen(s[0]) >= sizeof(x->org) || strlen(s[1]) >= sizeof(x->iid) ||
        strlen(s[2]) >= sizeof(x->provider) || strlen(s[3]) >= sizeof(x->nonce) ||
        strlen(s[4]) >= client_len)
        goto done;
    snprintf(x->org, sizeof(x->org), "%s", s[0]);
    snprintf(x->iid, sizeof(x->iid), "%s", s[1]);
    snprintf(x->provider, sizeof(x->provider), "%s", s[2]);
    snprintf(x->nonce, sizeof(x->nonce), "%s", s[3]);
    snprintf(client_id, client_len, "%s", s[4]);
    rc = *expires < api_now_ms(api) ? STATE_EXPIRED : STATE_OK;
done:
    jn_json_free(root);
    free(payload);
    free(mac);
    return rc;
}

/* A query parameter that must fit: NULL when absent; "" and *too_long set
 * when it does not. */
static const char *param(api_req_t *r, const char *name, char *buf, size_t len, int *too_long)
{
    const char *v = api_query(r, name, buf, len);

    if (v != NULL && strlen(v) + 1 >= len) {
        *too_long = 1;
        buf[0] = '\0';
    }
    return v;
}

/* The client authentication of the exchange: client_secret_basic, a
 * private_key_jwt assertion, or (a public client) client_id in the form. */
static int client_auth(const exchange_t *x, jn_buf_t *body, char **auth_line, char *err,
                       size_t errlen)
{
    jn_buf_t basic = {0};
    char *b64 = NULL, *assertion = NULL;
    jn_jwt_key_t *key = NULL;
    size_t n;
    int rc = 0;

    *auth_line = NULL;
    if (x->c.client_secret != NULL) {
        /* RFC 6749 section 2.3.1: form-encoded id and secret, then base64 */
        url_encode(&basic, x->c.client_id);
        jn_buf_puts(&basic, ":");
        url_encode(&basic, x->c.client_secret);
        if (basic.data == NULL ||
            jn_base64_encode((const uint8_t *)basic.data, basic.len, &b64, &n) != 0 ||
            asprintf(auth_line, "Authorization: Basic %s", b64) < 0) {
            *auth_line = NULL;
            rc = jn_errorf(err, errlen, "out of memory");
        }
        free_secret(b64);
        wipe_buf(&basic);
        return rc;
    }
    form(body, "client_id", x->c.client_id);
    if (x->c.private_key == NULL)
        return 0;
    if (jn_jwt_key_load_pem(x->c.private_key, strlen(x->c.private_key), &key, err, errlen) != 0 ||
        jn_jwt_client_assertion(key, "RS256", x->c.client_id, x->c.token_url, jn_now_ms() / 1000,
                                ASSERTION_TTL, &assertion, err, errlen) != 0) {
        jn_jwt_key_free(key);
        return -1;
    }
    form(body, "client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    form(body, "client_assertion", assertion);
    jn_jwt_token_free(assertion);
    jn_jwt_key_free(key);
    return 0;
}

static void oauth_callback(api_req_t *r)
{
    jn_api_t *api = r->api;
    api_oauth_t *o = api->oauth;
    const char *provider = jn_http_req_param(r->req, "provider"), *ecode;
    char state[PARAM_MAX], code[PARAM_MAX], redirect[1024], client_id[256], msg[512];
    char error[128], *verifier = NULL, *auth = NULL;
    const char *has_state, *has_code, *has_error;
    jn_integration_t it;
    char *strings = NULL;
    exchange_t *x;
    jn_http_request_t req;
    jn_buf_t body = {0};
    const char *auth_lines[1];
    jn_vault_t *v;
    nonce_find_t nf = {NULL, 0};
    int64_t expires = 0;
    int too_long = 0, rc, st;

    has_error = param(r, "error", error, sizeof(error), &too_long);
    if (too_long) {
        api_invalid(r, "error", "an OAuth error code", "error is longer than %zu bytes",
                    sizeof(error) - 1);
        return;
    }
    has_state = param(r, "state", state, sizeof(state), &too_long);
    if (too_long) {
        api_invalid(r, "state", "the state the provider redirects with",
                    "state is longer than %d bytes: not one this server issued", PARAM_MAX - 1);
        return;
    }
    has_code = param(r, "code", code, sizeof(code), &too_long);
    if (too_long) {
        api_invalid(r, "code", "the authorization code the provider redirects with",
                    "code is longer than %d bytes", PARAM_MAX - 1);
        return;
    }
    if (has_state == NULL || state[0] == '\0') {
        api_invalid(r, "state", "the state the provider redirects with", "state is required");
        return;
    }
    if (has_error == NULL && (has_code == NULL || code[0] == '\0')) {
        api_invalid(r, "code", "the authorization code the provider redirects with",
                    "code is required (or error, when the authorization was refused)");
        return;
    }
    x = calloc(1, sizeof(*x));
    if (x == NULL) {
        api_error(r, 503, "unavailable", "out of memory");
        return;
    }
    x->api = api;
    x->r = r;
    rc = state_check(api, state, x, client_id, sizeof(client_id), &expires);
    if (rc == STATE_OK && strcmp(x->provider, provider) != 0)
        rc = STATE_FORGED;
    if (rc != STATE_OK) {
        exchange_free(x);
        if (rc == STATE_EXPIRED)
            api_error(r, 400, "state_expired",
                      "the authorization took longer than 10 minutes; start again");
        else
            api_error(r, 400, "invalid_state",
                      "the state is not one this server issued for provider '%s'; start again",
                      provider);
        return;
    }
    /* one callback per state, whatever its outcome */
    rc = state_use(o, x->nonce, expires, api_now_ms(api));
    v = api_vault(api);
    if (rc == 0 && v != NULL) {
        nf.nonce = x->nonce;
        if (jn_vault_list(v, x->org, nonce_cb, &nf) != 0)
            rc = -1;
        else if (nf.found)
            rc = 1;
    }
    if (rc != 0) {
        exchange_free(x);
        if (rc > 0)
            api_error(r, 400, "state_used",
                      "this authorization was already completed or answered; start again");
        else
            api_error(r, 503, "unavailable", "the authorization cannot be checked now; retry");
        return;
    }
    if (has_error != NULL) {
        ecode = error_code(error);
        {
            jn_log_field_t f[] = {
                {"provider", x->provider, 0}, {"integration_id", x->iid, 0}, {"error", ecode, 0}};
            jn_log_fields(JN_LOG_WARN, "oauth connect: the provider refused", f, 3);
        }
        exchange_free(x);
        api_error(r, 400,
                  strcmp(ecode, "access_denied") == 0 ? "authorization_denied"
                                                      : "authorization_failed",
                  "the provider did not authorize the connection (error %s)", ecode);
        return;
    }
    /* the integration must still be the one the state names */
    rc = jn_store_integration_get(api->o.store, x->iid, &it, &strings);
    if (rc < 0) {
        exchange_free(x);
        api_error(r, 503, "unavailable", "the store cannot be read; try again");
        return;
    }
    if (rc > 0 || strcmp(it.organization_id, x->org) != 0 || strcmp(it.provider, provider) != 0) {
        free(strings);
        exchange_free(x);
        api_error(r, 400, "invalid_state",
                  "the integration this authorization was for no longer exists in its "
                  "organization; nothing was stored");
        return;
    }
    free(strings);
    if (client_for(api, x->org, provider, &x->c, &st, &ecode, msg, sizeof(msg)) != 0) {
        exchange_free(x);
        api_error(r, st, ecode, "%s", msg);
        return;
    }
    if (strcmp(x->c.client_id, client_id) != 0) {
        exchange_free(x);
        api_error(r, 400, "invalid_state",
                  "the OAuth client for provider '%s' changed since this authorization "
                  "started; start again",
                  provider);
        return;
    }
    if (api->o.rt == NULL || api->o.rt->http == NULL) {
        exchange_free(x);
        api_error(r, 503, "unavailable", "no HTTP client to exchange the code with");
        return;
    }
    verifier = verifier_for(o, x->nonce);
    redirect_uri(api, &x->c, provider, redirect, sizeof(redirect));
    form(&body, "grant_type", "authorization_code");
    form(&body, "code", code);
    form(&body, "redirect_uri", redirect);
    form(&body, "code_verifier", verifier);
    if (verifier == NULL || client_auth(x, &body, &auth, msg, sizeof(msg)) != 0) {
        jn_log_error("oauth connect: %s: client authentication: %s", provider,
                     verifier ? msg : "out of memory");
        exchange_free(x);
        api_error(r, 503, "unavailable",
                  "the client authentication of the exchange could not be built");
        goto done;
    }
    jn_http_request_init(&req);
    req.method = "POST";
    req.url = x->c.token_url;
    {
        static const char *const headers[] = {"Content-Type: application/x-www-form-urlencoded",
                                              "Accept: application/json"};
        req.headers = headers;
        req.nheaders = 2;
    }
    if (auth) {
        auth_lines[0] = auth;
        req.auth_headers = auth_lines;
        req.nauth_headers = 1;
    }
    req.body = body.data ? body.data : "";
    req.body_len = body.len;
    req.timeout_ms = EXCHANGE_TIMEOUT_MS;
    req.max_redirects = 0;
    req.addr_policy = token_addr_policy;
    req.policy_ud = api->o.rt;
    /* listed first: the API cancels what is in flight when it goes */
    x->next = o->exchanges;
    o->exchanges = x;
    rc = jn_http_client_send(api->o.rt->http, &req, on_exchanged, x, &x->call);
    if (rc != JN_HTTP_OK) {
        exchange_free(x);
        api_error(r, 502, "exchange_failed", "the token exchange could not start: %s",
                  jn_http_error_name(rc));
    }
done:
    free_secret(auth);
    wipe_buf(&body);
    free_secret(verifier);
    memset(code, 0, sizeof(code));
}

const api_route_t api_oauth_routes[] = {
    {"GET", "/v1/oauth/{provider}/authorize", oauth_authorize, NEED_READ, 0, 0},
    {"GET", "/v1/oauth/{provider}/callback", oauth_callback, NEED_NONE, 0, 0},
    {NULL, NULL, NULL, 0, 0, 0},
};
