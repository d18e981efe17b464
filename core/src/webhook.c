/* Webhook verification schemes: the declaration parser and the built-in
 * presets. Verification itself is in webhook_verify.c. */
#include "junction/error.h"
#include "junction/webhook.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "webhook_internal.h"

/* Presets are declarations of the same shape connectors write; nothing below
 * knows a provider by name. Sources of truth: the providers' documentation,
 * summarised in the design notes (PROVIDERS.md), and the test vectors. */
typedef struct {
    const char *name;
    const char *json;
} preset_t;

static const preset_t presets[] = {
    /* X-Hub-Signature-256: sha256=<hex HMAC of the raw body>; no timestamp. */
    {"github", "{\"scheme\":\"hmac\",\"algorithm\":\"sha256\","
               "\"signature\":{\"header\":\"X-Hub-Signature-256\",\"prefix\":\"sha256=\","
               "\"encoding\":\"hex\"},"
               "\"signed_content\":\"{body}\","
               "\"delivery_id\":{\"header\":\"X-GitHub-Delivery\"},"
               "\"event_type\":{\"header\":\"X-GitHub-Event\"}}"},
    /* v0=<hex HMAC of "v0:{timestamp}:{body}">, 5 minutes of tolerance; the
     * url_verification request is signed like any other. */
    {"slack", "{\"scheme\":\"hmac\",\"algorithm\":\"sha256\","
              "\"signature\":{\"header\":\"X-Slack-Signature\",\"prefix\":\"v0=\","
              "\"encoding\":\"hex\"},"
              "\"timestamp\":{\"header\":\"X-Slack-Request-Timestamp\",\"unit\":\"s\","
              "\"tolerance\":300},"
              "\"signed_content\":\"v0:{timestamp}:{body}\","
              "\"delivery_id\":{\"json\":\"event_id\"},"
              "\"event_type\":{\"json\":\"event.type\"},"
              "\"challenge\":{\"detect\":{\"json\":\"type\",\"equals\":\"url_verification\"},"
              "\"value\":{\"json\":\"challenge\"},\"response\":{\"json\":\"challenge\"}}}"},
    /* webhook-signature: space-separated "v1,<base64>" entries (several while
     * a secret rotates; other versions such as v1a are skipped); the key is
     * the base64 after "whsec_". */
    {"standard_webhooks",
     "{\"scheme\":\"hmac\",\"algorithm\":\"sha256\",\"secret_encoding\":\"whsec\","
     "\"signature\":{\"header\":\"webhook-signature\",\"prefix\":\"v1,\","
     "\"encoding\":\"base64\",\"separator\":\" \"},"
     "\"timestamp\":{\"header\":\"webhook-timestamp\",\"unit\":\"s\",\"tolerance\":300},"
     "\"signed_content\":\"{id}.{timestamp}.{body}\","
     "\"delivery_id\":{\"header\":\"webhook-id\"},"
     "\"event_type\":{\"json\":\"type\"}}"},
    /* A static secret in the header configured on the hook (Authorization by
     * default); Okta sends it on the one-time verification GET too. */
    {"okta", "{\"scheme\":\"token\",\"token\":{\"header\":\"Authorization\"},"
             "\"delivery_id\":{\"json\":\"eventId\"},"
             "\"event_type\":{\"json\":\"data.events.0.eventType\"},"
             "\"challenge\":{\"method\":\"GET\","
             "\"detect\":{\"header\":\"X-Okta-Verification-Challenge\"},"
             "\"response\":{\"json\":\"verification\"}}}"},
    /* X-Hub-Signature: <method>=<hex HMAC>; the method names the algorithm. */
    {"jira", "{\"scheme\":\"hmac\",\"algorithm\":[\"sha256\"],"
             "\"signature\":{\"header\":\"X-Hub-Signature\",\"method_prefix\":true,"
             "\"encoding\":\"hex\"},"
             "\"signed_content\":\"{body}\","
             "\"delivery_id\":{\"header\":\"X-Atlassian-Webhook-Identifier\"},"
             "\"event_type\":{\"json\":\"webhookEvent\"}}"},
    /* X-Gitlab-Token: the secret itself. */
    {"gitlab", "{\"scheme\":\"token\",\"token\":{\"header\":\"X-Gitlab-Token\"},"
               "\"delivery_id\":{\"header\":\"X-Gitlab-Event-UUID\"},"
               "\"event_type\":{\"header\":\"X-Gitlab-Event\"}}"},
    /* Linear-Signature: hex HMAC of the body; webhookTimestamp (ms) in the
     * signed body, 60 seconds of tolerance. */
    {"linear", "{\"scheme\":\"hmac\",\"algorithm\":\"sha256\","
               "\"signature\":{\"header\":\"Linear-Signature\",\"encoding\":\"hex\"},"
               "\"signed_content\":\"{body}\","
               "\"timestamp\":{\"json\":\"webhookTimestamp\",\"unit\":\"ms\",\"tolerance\":60},"
               "\"delivery_id\":{\"header\":\"Linear-Delivery\"},"
               "\"event_type\":{\"header\":\"Linear-Event\"}}"},
    /* A secret in the endpoint URL's query (Event Grid keeps it on every
     * delivery, the validation event included); the SubscriptionValidation
     * handshake answers {"validationResponse": code}. */
    {"azure_event_grid", "{\"scheme\":\"token\",\"token\":{\"query\":\"code\"},"
                         "\"delivery_id\":{\"json\":\"0.id\"},"
                         "\"event_type\":{\"json\":\"0.eventType\"},"
                         "\"challenge\":{\"detect\":{\"header\":\"aeg-event-type\","
                         "\"equals\":\"SubscriptionValidation\"},"
                         "\"value\":{\"json\":\"0.data.validationCode\"},"
                         "\"response\":{\"json\":\"validationResponse\"}}}"},
    /* clientState in every notification of the batch; the subscription's
     * validation POST carries ?validationToken= and no clientState, and wants
     * the token back as text/plain. */
    {"microsoft_graph", "{\"scheme\":\"token\",\"token\":{\"json\":\"value.*.clientState\"},"
                        "\"event_type\":{\"json\":\"value.0.changeType\"},"
                        "\"challenge\":{\"detect\":{\"query\":\"validationToken\"},"
                        "\"response\":\"text\",\"authenticate\":false}}"},
    /* An OIDC token signed by Google (RS256): audience from the integration's
     * configuration, issuer accounts.google.com in either spelling. */
    {"google_pubsub", "{\"scheme\":\"jwt\",\"jwt\":{\"header\":\"Authorization\","
                      "\"prefix\":\"Bearer \",\"algorithm\":\"RS256\","
                      "\"issuers\":[\"https://accounts.google.com\",\"accounts.google.com\"],"
                      "\"leeway\":60},"
                      "\"delivery_id\":{\"json\":\"message.messageId\"}}"},
};

#define PRESET_COUNT (sizeof(presets) / sizeof(presets[0]))

/* Members of a declaration, and which kinds they apply to. */
enum { FOR_HMAC = 1 << WH_KIND_HMAC, FOR_TOKEN = 1 << WH_KIND_TOKEN, FOR_JWT = 1 << WH_KIND_JWT };
#define FOR_ALL (FOR_HMAC | FOR_TOKEN | FOR_JWT)

static const struct {
    const char *name;
    unsigned kinds;
} members[] = {
    {"scheme", FOR_ALL},           {"algorithm", FOR_HMAC},
    {"signature", FOR_HMAC},       {"signed_content", FOR_HMAC},
    {"secret_encoding", FOR_HMAC}, {"timestamp", FOR_HMAC},
    {"token", FOR_TOKEN},          {"jwt", FOR_JWT},
    {"delivery_id", FOR_ALL},      {"event_type", FOR_ALL},
    {"challenge", FOR_ALL},
};

static const char *const kind_names[] = {"hmac", "token", "jwt"};

/* ---- Reason codes ----------------------------------------------------- */

static const struct {
    int reason;
    const char *name;
    int status;
} reasons[] = {
    {JN_WEBHOOK_OK, "ok", 200},
    {JN_WEBHOOK_EINVAL, "invalid_argument", 500},
    {JN_WEBHOOK_ENOMEM, "out_of_memory", 503},
    {JN_WEBHOOK_ECONFIG, "bad_configuration", 500},
    {JN_WEBHOOK_EMETHOD, "method_not_allowed", 405},
    {JN_WEBHOOK_EDUPLICATE, "duplicate_field", 400},
    {JN_WEBHOOK_ESIGNATURE_MISSING, "missing_signature", 401},
    {JN_WEBHOOK_ESIGNATURE_MALFORMED, "malformed_signature", 401},
    {JN_WEBHOOK_ESIGNATURE_MISMATCH, "signature_mismatch", 401},
    {JN_WEBHOOK_ESIGNED_INPUT, "missing_signed_input", 401},
    {JN_WEBHOOK_ETIMESTAMP_MISSING, "missing_timestamp", 401},
    {JN_WEBHOOK_ETIMESTAMP_MALFORMED, "malformed_timestamp", 401},
    {JN_WEBHOOK_ETIMESTAMP_STALE, "stale_timestamp", 401},
    {JN_WEBHOOK_ETOKEN_MISSING, "missing_token", 401},
    {JN_WEBHOOK_ETOKEN_MISMATCH, "token_mismatch", 401},
    {JN_WEBHOOK_EJWT_MALFORMED, "malformed_jwt", 401},
    {JN_WEBHOOK_EJWT_ALGORITHM, "jwt_algorithm_refused", 401},
    {JN_WEBHOOK_EJWT_KEY, "jwt_unknown_key", 401},
    {JN_WEBHOOK_EJWT_SIGNATURE, "jwt_signature_mismatch", 401},
    {JN_WEBHOOK_EJWT_EXPIRED, "jwt_expired", 401},
    {JN_WEBHOOK_EJWT_NOT_YET_VALID, "jwt_not_yet_valid", 401},
    {JN_WEBHOOK_EJWT_AUDIENCE, "jwt_wrong_audience", 401},
    {JN_WEBHOOK_EJWT_ISSUER, "jwt_wrong_issuer", 401},
    {JN_WEBHOOK_EJWT_EMAIL, "jwt_wrong_email", 401},
    {JN_WEBHOOK_EBODY, "malformed_body", 400},
    {JN_WEBHOOK_ECHALLENGE, "malformed_challenge", 400},
    {JN_WEBHOOK_EDELIVERY_ID, "malformed_delivery_id", 400},
    {JN_WEBHOOK_EEVENT_TYPE, "malformed_event_type", 400},
};

const char *jn_webhook_reason_str(int reason)
{
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (reasons[i].reason == reason)
            return reasons[i].name;
    return "unknown";
}

int jn_webhook_reason_status(int reason)
{
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (reasons[i].reason == reason)
            return reasons[i].status;
    return 500;
}

/* ---- Algorithms -------------------------------------------------------- */

static const struct {
    unsigned alg;
    const char *name, *digest;
    size_t len;
} algs[] = {
    {WH_ALG_SHA1, "sha1", "SHA1", 20},
    {WH_ALG_SHA256, "sha256", "SHA256", 32},
    {WH_ALG_SHA512, "sha512", "SHA512", 64},
};

size_t wh_alg_len(unsigned alg)
{
    for (size_t i = 0; i < 3; i++)
        if (algs[i].alg == alg)
            return algs[i].len;
    return 0;
}

const char *wh_alg_name(unsigned alg)
{
    for (size_t i = 0; i < 3; i++)
        if (algs[i].alg == alg)
            return algs[i].name;
    return "?";
}

const char *wh_alg_digest(unsigned alg)
{
    for (size_t i = 0; i < 3; i++)
        if (algs[i].alg == alg)
            return algs[i].digest;
    return NULL;
}

unsigned wh_alg_parse(const char *s, size_t n)
{
    for (size_t i = 0; i < 3; i++)
        if (strlen(algs[i].name) == n && strncasecmp(s, algs[i].name, n) == 0)
            return algs[i].alg;
    return 0;
}

/* ---- Presets ----------------------------------------------------------- */

static const preset_t *preset_find(const char *name, size_t len)
{
    for (size_t i = 0; i < PRESET_COUNT; i++)
        if (strlen(presets[i].name) == len && memcmp(presets[i].name, name, len) == 0)
            return &presets[i];
    return NULL;
}

const char *jn_webhook_preset_json(const char *name)
{
    const preset_t *p = name != NULL ? preset_find(name, strlen(name)) : NULL;
    return p != NULL ? p->json : NULL;
}

const char *jn_webhook_preset_name(size_t i)
{
    return i < PRESET_COUNT ? presets[i].name : NULL;
}

/* A NUL-terminated copy of n bytes that need not be terminated. */
static char *memdup_str(const char *p, size_t n)
{
    char *out = malloc(n + 1);
    if (out != NULL) {
        memcpy(out, p, n);
        out[n] = '\0';
    }
    return out;
}

/* ---- Parsing helpers --------------------------------------------------- */

/* The declaration being parsed: the connector's members first, then the
 * preset's. A member set to false in the connector's declaration hides the
 * preset's. */
typedef struct {
    const jn_json_t *decl;
    const jn_json_t *preset;
    char *err;
    size_t errlen;
} parse_t;

static const jn_json_t *member(const parse_t *p, const char *name)
{
    const jn_json_t *m = jn_json_get(p->decl, name);
    if (m != NULL)
        return jn_json_is_false(m) ? NULL : m;
    return jn_json_get(p->preset, name);
}

/* Values quoted in messages come from declarations: printable ASCII only,
 * and short. */
#define SHOW_SIZE 72

static const char *show(const char *s, size_t n, char out[SHOW_SIZE])
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (o + 4 >= SHOW_SIZE) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[o] = '\0';
    return out;
}

/* A string member: 1 present (into *out, malloc'ed), 0 absent, -1 error. */
static int get_string(const parse_t *p, const jn_json_t *obj, const char *what, const char *name,
                      size_t max_len, char **out)
{
    const jn_json_t *m = jn_json_get(obj, name);
    size_t len;
    const char *s;
    *out = NULL;
    if (m == NULL)
        return 0;
    if ((s = jn_json_string(m, &len)) == NULL)
        return jn_errorf(p->err, p->errlen, "webhook.%s.%s: expected a string, got %s", what, name,
                         jn_json_type_name(m));
    if (len == 0 || len > max_len || strlen(s) != len)
        return jn_errorf(p->err, p->errlen,
                         "webhook.%s.%s: expected 1 to %zu characters without NUL, got %zu bytes",
                         what, name, max_len, len);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return jn_errorf(p->err, p->errlen, "webhook.%s.%s: control character at byte %zu",
                             what, name, i);
    if ((*out = strdup(s)) == NULL)
        return jn_errorf(p->err, p->errlen, "webhook: out of memory");
    return 1;
}

/* An optional boolean member: 0 or 1 into *out (default kept), -1 error. */
static int get_bool(const parse_t *p, const jn_json_t *obj, const char *what, const char *name,
                    int *out)
{
    const jn_json_t *m = jn_json_get(obj, name);
    if (m == NULL)
        return 0;
    if (!jn_json_is_bool(m))
        return jn_errorf(p->err, p->errlen, "webhook.%s.%s: expected true or false, got %s", what,
                         name, jn_json_type_name(m));
    *out = jn_json_is_true(m);
    return 0;
}

/* An optional integer member within lo..hi (default kept), -1 error. */
static int get_int(const parse_t *p, const jn_json_t *obj, const char *what, const char *name,
                   int64_t lo, int64_t hi, int64_t *out)
{
    const jn_json_t *m = jn_json_get(obj, name);
    int64_t v;
    if (m == NULL)
        return 0;
    if (jn_json_int64(m, &v) < 0 || v < lo || v > hi)
        return jn_errorf(p->err, p->errlen,
                         "webhook.%s.%s: expected an integer from %" PRId64 " to %" PRId64, what,
                         name, lo, hi);
    *out = v;
    return 0;
}

/* Refuses members of `obj` not in the NULL-terminated `allowed` list. */
static int only_members(const parse_t *p, const jn_json_t *obj, const char *what,
                        const char *const *allowed)
{
    char shown[SHOW_SIZE];
    for (const jn_json_t *m = jn_json_first(obj); m != NULL; m = jn_json_next(m)) {
        size_t len;
        const char *name = jn_json_name(m, &len);
        size_t i;
        for (i = 0; allowed[i] != NULL; i++)
            if (strlen(allowed[i]) == len && memcmp(allowed[i], name, len) == 0)
                break;
        if (allowed[i] == NULL) {
            char list[256] = "";
            for (i = 0; allowed[i] != NULL; i++) {
                strncat(list, i ? ", " : "", sizeof(list) - strlen(list) - 1);
                strncat(list, allowed[i], sizeof(list) - strlen(list) - 1);
            }
            return jn_errorf(p->err, p->errlen, "webhook.%s: unknown member '%s' (known: %s)", what,
                             show(name, len, shown), list);
        }
    }
    return 0;
}

static int want_object(const parse_t *p, const jn_json_t *m, const char *what)
{
    if (!jn_json_is_object(m))
        return jn_errorf(p->err, p->errlen, "webhook.%s: expected a table (JSON object), got %s",
                         what, jn_json_type_name(m));
    return 0;
}

/* RFC 9110 token characters: what a header name may hold. */
static int is_tchar(unsigned char c)
{
    return isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int header_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return 0;
    return 1;
}

/* Query parameter names: printable ASCII without the delimiters. */
static int query_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= 0x20 || s[i] >= 0x7f || strchr("&=#%+", s[i]) != NULL)
            return 0;
    return 1;
}

static void source_free(wh_source_t *s)
{
    free(s->name);
    for (size_t i = 0; i < s->nsegs; i++)
        free(s->segs[i]);
    memset(s, 0, sizeof(*s));
}

/* "a.b.0.c": segments of 1..64 characters; "*" only where allowed. */
static int json_path_parse(const parse_t *p, const char *what, int allow_star, wh_source_t *src)
{
    const char *s = src->name, *end;
    char shown[SHOW_SIZE];
    src->star = -1;
    for (;;) {
        end = strchr(s, '.');
        size_t len = end != NULL ? (size_t)(end - s) : strlen(s);
        if (len == 0 || len > 64)
            return jn_errorf(p->err, p->errlen,
                             "webhook.%s.json: path '%s' has an empty or overlong segment", what,
                             show(src->name, strlen(src->name), shown));
        if (src->nsegs == WH_PATH_MAX_SEGMENTS)
            return jn_errorf(p->err, p->errlen,
                             "webhook.%s.json: path '%s' has more than %d segments", what,
                             show(src->name, strlen(src->name), shown), WH_PATH_MAX_SEGMENTS);
        if (len == 1 && s[0] == '*') {
            if (!allow_star || src->star >= 0)
                return jn_errorf(p->err, p->errlen,
                                 "webhook.%s.json: '*' (every element) is only accepted once, in "
                                 "a token's path",
                                 what);
            src->star = (int)src->nsegs;
        }
        if ((src->segs[src->nsegs] = memdup_str(s, len)) == NULL)
            return jn_errorf(p->err, p->errlen, "webhook: out of memory");
        src->nsegs++;
        if (end == NULL)
            break;
        s = end + 1;
    }
    if (src->star == (int)src->nsegs - 1)
        return jn_errorf(p->err, p->errlen,
                         "webhook.%s.json: '*' must be followed by the member to read", what);
    return 0;
}

enum { SRC_ALLOW_HEADER = 1, SRC_ALLOW_QUERY = 2, SRC_ALLOW_JSON = 4, SRC_ALLOW_STAR = 8 };

/* { header = "..." } | { query = "..." } | { json = "a.b" }: exactly one. The
 * object's other members are the caller's to check. */
static int source_parse(const parse_t *p, const jn_json_t *obj, const char *what, unsigned allow,
                        wh_source_t *src)
{
    static const char *const keys[] = {"header", "query", "json"};
    static const int kinds[] = {WH_SRC_HEADER, WH_SRC_QUERY, WH_SRC_JSON};
    static const unsigned allows[] = {SRC_ALLOW_HEADER, SRC_ALLOW_QUERY, SRC_ALLOW_JSON};
    char shown[SHOW_SIZE], names[64] = "";
    int found = 0;

    memset(src, 0, sizeof(*src));
    src->star = -1;
    for (size_t i = 0; i < 3; i++) {
        if (allow & allows[i]) {
            strcat(names, names[0] ? " or " : "");
            strcat(names, keys[i]);
        }
    }
    for (size_t i = 0; i < 3; i++) {
        if (jn_json_get(obj, keys[i]) == NULL)
            continue;
        if (!(allow & allows[i]))
            return jn_errorf(p->err, p->errlen, "webhook.%s: '%s' is not accepted here (use %s)",
                             what, keys[i], names);
        if (found++) {
            source_free(src);
            return jn_errorf(p->err, p->errlen, "webhook.%s: give one of %s, not several", what,
                             names);
        }
        if (get_string(p, obj, what, keys[i], 256, &src->name) < 0)
            return -1;
        src->kind = kinds[i];
    }
    if (!found)
        return jn_errorf(p->err, p->errlen, "webhook.%s: expected %s", what, names);
    if (src->kind == WH_SRC_HEADER && !header_name_ok(src->name))
        return jn_errorf(p->err, p->errlen,
                         "webhook.%s.header: '%s' is not a header name (1 to 64 token characters)",
                         what, show(src->name, strlen(src->name), shown));
    if (src->kind == WH_SRC_QUERY && !query_name_ok(src->name))
        return jn_errorf(p->err, p->errlen,
                         "webhook.%s.query: '%s' is not a plain query parameter name", what,
                         show(src->name, strlen(src->name), shown));
    if (src->kind == WH_SRC_JSON)
        return json_path_parse(p, what, (allow & SRC_ALLOW_STAR) != 0, src);
    return 0;
}

/* A member that is only a source: { header = ... } and nothing else. */
static int plain_source(const parse_t *p, const char *name, unsigned allow, wh_source_t *src)
{
    static const char *const allowed[] = {"header", "query", "json", NULL};
    const jn_json_t *m = member(p, name);
    src->kind = WH_SRC_NONE;
    src->star = -1;
    if (m == NULL)
        return 0;
    if (want_object(p, m, name) < 0 || only_members(p, m, name, allowed) < 0)
        return -1;
    return source_parse(p, m, name, allow, src);
}

/* ---- Members ----------------------------------------------------------- */

static int parse_algorithm(const parse_t *p, jn_webhook_scheme_t *s)
{
    const jn_json_t *m = member(p, "algorithm");
    size_t len;
    const char *name;
    char shown[SHOW_SIZE];

    if (m == NULL) {
        s->algorithms = WH_ALG_SHA256;
        return 0;
    }
    if ((name = jn_json_string(m, &len)) != NULL) {
        if ((s->algorithms = wh_alg_parse(name, len)) == 0)
            return jn_errorf(p->err, p->errlen,
                             "webhook.algorithm: '%s' is not one of sha1, sha256, sha512",
                             show(name, len, shown));
        return 0;
    }
    if (!jn_json_is_array(m) || jn_json_count(m) == 0)
        return jn_errorf(p->err, p->errlen,
                         "webhook.algorithm: expected a name (sha1, sha256, sha512) or a "
                         "non-empty list of names, got %s",
                         jn_json_type_name(m));
    for (const jn_json_t *v = jn_json_first(m); v != NULL; v = jn_json_next(v)) {
        unsigned alg;
        if ((name = jn_json_string(v, &len)) == NULL || (alg = wh_alg_parse(name, len)) == 0)
            return jn_errorf(p->err, p->errlen,
                             "webhook.algorithm: every entry must be one of sha1, sha256, sha512");
        s->algorithms |= alg;
    }
    return 0;
}

static int one_algorithm(unsigned set)
{
    return set != 0 && (set & (set - 1)) == 0;
}

static int parse_signature(const parse_t *p, jn_webhook_scheme_t *s)
{
    static const char *const allowed[] = {"header",   "prefix",    "method_prefix",
                                          "encoding", "separator", NULL};
    const jn_json_t *m = member(p, "signature");
    char *encoding = NULL;
    int rc = -1;

    if (m == NULL)
        return jn_errorf(p->err, p->errlen,
                         "webhook.signature is required for scheme hmac: { header = \"...\", "
                         "prefix = \"...\", encoding = \"hex\" }");
    if (want_object(p, m, "signature") < 0 || only_members(p, m, "signature", allowed) < 0)
        return -1;
    if (get_string(p, m, "signature", "header", 64, &s->sig_header) <= 0) {
        if (s->sig_header == NULL && jn_json_get(m, "header") == NULL)
            jn_errorf(p->err, p->errlen, "webhook.signature.header is required");
        return -1;
    }
    if (!header_name_ok(s->sig_header))
        return jn_errorf(p->err, p->errlen,
                         "webhook.signature.header: not a header name (1 to 64 token characters)");
    if (get_string(p, m, "signature", "prefix", 32, &s->sig_prefix) < 0 ||
        get_bool(p, m, "signature", "method_prefix", &s->method_prefix) < 0 ||
        get_string(p, m, "signature", "separator", 4, &s->separator) < 0 ||
        get_string(p, m, "signature", "encoding", 16, &encoding) < 0)
        goto out;
    if (s->sig_prefix != NULL && s->method_prefix) {
        jn_errorf(p->err, p->errlen,
                  "webhook.signature: prefix and method_prefix exclude each other (a method "
                  "prefix is \"<algorithm>=\")");
        goto out;
    }
    if (encoding == NULL || strcmp(encoding, "hex") == 0) {
        s->encoding = WH_ENC_HEX;
    } else if (strcmp(encoding, "base64") == 0) {
        s->encoding = WH_ENC_BASE64;
    } else {
        jn_errorf(p->err, p->errlen, "webhook.signature.encoding: expected hex or base64");
        goto out;
    }
    if (!s->method_prefix && !one_algorithm(s->algorithms)) {
        jn_errorf(p->err, p->errlen,
                  "webhook.algorithm: a list of algorithms needs signature.method_prefix = true "
                  "(the header names the one it used)");
        goto out;
    }
    rc = 0;
out:
    free(encoding);
    return rc;
}

static int template_add(const parse_t *p, jn_webhook_scheme_t *s, int kind, const char *text,
                        size_t len)
{
    if (s->nparts == WH_TEMPLATE_MAX_PARTS)
        return jn_errorf(p->err, p->errlen, "webhook.signed_content: more than %d parts",
                         WH_TEMPLATE_MAX_PARTS);
    wh_part_t *part = &s->parts[s->nparts];
    part->kind = kind;
    part->len = len;
    if (text != NULL && (part->text = memdup_str(text, len)) == NULL)
        return jn_errorf(p->err, p->errlen, "webhook: out of memory");
    s->nparts++;
    return 0;
}

/* "{body}", "v0:{timestamp}:{body}", "{id}.{timestamp}.{body}": placeholders
 * {body} {timestamp} {id} {method} {path} {header:Name}; "{{" and "}}" are
 * literal braces. */
static int parse_template(const parse_t *p, jn_webhook_scheme_t *s)
{
    static const struct {
        const char *name;
        int kind;
    } names[] = {{"body", WH_PART_BODY},
                 {"timestamp", WH_PART_TIMESTAMP},
                 {"id", WH_PART_ID},
                 {"method", WH_PART_METHOD},
                 {"path", WH_PART_PATH}};
    const jn_json_t *m = member(p, "signed_content");
    const char *t = "{body}";
    char lit[512], shown[SHOW_SIZE];
    size_t len, nlit = 0;
    int bodies = 0;

    if (m != NULL && (t = jn_json_string(m, &len)) == NULL)
        return jn_errorf(p->err, p->errlen, "webhook.signed_content: expected a string, got %s",
                         jn_json_type_name(m));
    len = strlen(t);
    if (len == 0 || len > 256)
        return jn_errorf(p->err, p->errlen, "webhook.signed_content: expected 1 to 256 characters");
    for (size_t i = 0; i < len; i++) {
        if ((t[i] == '{' && t[i + 1] == '{') || (t[i] == '}' && t[i + 1] == '}')) {
            lit[nlit++] = t[i++];
            continue;
        }
        if (t[i] == '}')
            return jn_errorf(p->err, p->errlen,
                             "webhook.signed_content: lone '}' at byte %zu (write }} for a brace)",
                             i);
        if (t[i] != '{') {
            lit[nlit++] = t[i];
            continue;
        }
        const char *close = strchr(t + i, '}');
        if (close == NULL)
            return jn_errorf(p->err, p->errlen,
                             "webhook.signed_content: '{' at byte %zu is never closed", i);
        if (nlit > 0 && template_add(p, s, WH_PART_LITERAL, lit, nlit) < 0)
            return -1;
        nlit = 0;
        const char *name = t + i + 1;
        size_t nlen = (size_t)(close - name);
        int kind = -1;
        for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
            if (strlen(names[k].name) == nlen && memcmp(names[k].name, name, nlen) == 0)
                kind = names[k].kind;
        if (kind >= 0) {
            if (template_add(p, s, kind, NULL, 0) < 0)
                return -1;
        } else if (nlen > 7 && memcmp(name, "header:", 7) == 0) {
            char hdr[65];
            if (nlen - 7 >= sizeof(hdr))
                return jn_errorf(p->err, p->errlen,
                                 "webhook.signed_content: header name too long at byte %zu", i);
            memcpy(hdr, name + 7, nlen - 7);
            hdr[nlen - 7] = '\0';
            if (!header_name_ok(hdr))
                return jn_errorf(p->err, p->errlen,
                                 "webhook.signed_content: '{%s}' does not name a header",
                                 show(name, nlen, shown));
            if (template_add(p, s, WH_PART_HEADER, hdr, nlen - 7) < 0)
                return -1;
        } else {
            return jn_errorf(p->err, p->errlen,
                             "webhook.signed_content: unknown placeholder '{%s}' (known: {body}, "
                             "{timestamp}, {id}, {method}, {path}, {header:Name})",
                             show(name, nlen, shown));
        }
        bodies += kind == WH_PART_BODY;
        i = (size_t)(close - t);
    }
    if (nlit > 0 && template_add(p, s, WH_PART_LITERAL, lit, nlit) < 0)
        return -1;
    /* A signature that does not cover the body authenticates nothing. */
    if (bodies != 1)
        return jn_errorf(p->err, p->errlen,
                         "webhook.signed_content: {body} must appear exactly once (it appears %d "
                         "times)",
                         bodies);
    return 0;
}

static int template_has(const jn_webhook_scheme_t *s, int kind)
{
    for (size_t i = 0; i < s->nparts; i++)
        if (s->parts[i].kind == kind)
            return 1;
    return 0;
}

static int parse_secret_encoding(const parse_t *p, jn_webhook_scheme_t *s)
{
    static const char *const names[] = {"raw", "hex", "base64", "whsec"};
    const jn_json_t *m = member(p, "secret_encoding");
    const char *v;
    size_t len;
    if (m == NULL)
        return 0;
    if ((v = jn_json_string(m, &len)) != NULL)
        for (int i = 0; i < 4; i++)
            if (strlen(names[i]) == len && memcmp(names[i], v, len) == 0) {
                s->secret_encoding = i; /* WH_SECRET_* in the same order */
                return 0;
            }
    return jn_errorf(p->err, p->errlen,
                     "webhook.secret_encoding: expected raw, hex, base64 or whsec (Standard "
                     "Webhooks' whsec_<base64>)");
}

static int parse_timestamp(const parse_t *p, jn_webhook_scheme_t *s)
{
    static const char *const allowed[] = {"header", "query", "json", "unit", "tolerance", NULL};
    const jn_json_t *m = member(p, "timestamp");
    char *unit = NULL;
    int rc = -1;

    s->timestamp.kind = WH_SRC_NONE;
    if (m == NULL) {
        if (template_has(s, WH_PART_TIMESTAMP))
            return jn_errorf(p->err, p->errlen,
                             "webhook.signed_content uses {timestamp} but webhook.timestamp is "
                             "not declared");
        return 0;
    }
    if (want_object(p, m, "timestamp") < 0 || only_members(p, m, "timestamp", allowed) < 0 ||
        source_parse(p, m, "timestamp", SRC_ALLOW_HEADER | SRC_ALLOW_JSON, &s->timestamp) < 0 ||
        get_string(p, m, "timestamp", "unit", 8, &unit) < 0)
        goto out;
    if (unit == NULL || strcmp(unit, "s") == 0) {
        s->timestamp_ms = 0;
    } else if (strcmp(unit, "ms") == 0) {
        s->timestamp_ms = 1;
    } else {
        jn_errorf(p->err, p->errlen, "webhook.timestamp.unit: expected s or ms");
        goto out;
    }
    s->tolerance_s = 300;
    if (get_int(p, m, "timestamp", "tolerance", 1, 86400, &s->tolerance_s) < 0)
        goto out;
    /* A timestamp outside the signed content could be changed at will, and a
     * replay window on it would protect nothing; one in the body is signed
     * with the body. */
    if (s->timestamp.kind == WH_SRC_HEADER && !template_has(s, WH_PART_TIMESTAMP)) {
        jn_errorf(p->err, p->errlen,
                  "webhook.timestamp: a timestamp header must be signed: put {timestamp} in "
                  "webhook.signed_content");
        goto out;
    }
    rc = 0;
out:
    free(unit);
    return rc;
}

static int parse_token(const parse_t *p, jn_webhook_scheme_t *s)
{
    static const char *const allowed[] = {"header", "query", "json", "prefix", NULL};
    const jn_json_t *m = member(p, "token");
    if (m == NULL)
        return jn_errorf(p->err, p->errlen,
                         "webhook.token is required for scheme token: { header = \"...\" }, { "
                         "query = \"...\" } or { json = \"path\" }");
    if (want_object(p, m, "token") < 0 || only_members(p, m, "token", allowed) < 0 ||
        source_parse(p, m, "token",
                     SRC_ALLOW_HEADER | SRC_ALLOW_QUERY | SRC_ALLOW_JSON | SRC_ALLOW_STAR,
                     &s->token) < 0 ||
        get_string(p, m, "token", "prefix", 32, &s->token_prefix) < 0)
        return -1;
    if (s->token_prefix != NULL && s->token.kind != WH_SRC_HEADER)
        return jn_errorf(p->err, p->errlen, "webhook.token.prefix applies to a header only");
    return 0;
}

static int parse_jwt(const parse_t *p, jn_webhook_scheme_t *s)
{
    static const char *const allowed[] = {"header",  "prefix", "algorithm",
                                          "issuers", "leeway", NULL};
    const jn_json_t *m = member(p, "jwt"), *iss;
    char *alg = NULL;
    int rc = -1;

    if (m == NULL)
        return jn_errorf(p->err, p->errlen,
                         "webhook.jwt is required for scheme jwt: { issuers = { \"...\" } }");
    if (want_object(p, m, "jwt") < 0 || only_members(p, m, "jwt", allowed) < 0 ||
        get_string(p, m, "jwt", "header", 64, &s->jwt_header) < 0 ||
        get_string(p, m, "jwt", "prefix", 32, &s->jwt_prefix) < 0 ||
        get_string(p, m, "jwt", "algorithm", 16, &alg) < 0)
        goto out;
    if (alg != NULL && strcmp(alg, "RS256") != 0) {
        jn_errorf(p->err, p->errlen,
                  "webhook.jwt.algorithm: only RS256 is verified (never none or HMAC)");
        goto out;
    }
    if (s->jwt_header == NULL && (s->jwt_header = strdup("Authorization")) == NULL)
        goto nomem;
    if (!header_name_ok(s->jwt_header)) {
        jn_errorf(p->err, p->errlen, "webhook.jwt.header: not a header name");
        goto out;
    }
    if (s->jwt_prefix == NULL && jn_json_get(m, "prefix") == NULL &&
        (s->jwt_prefix = strdup("Bearer ")) == NULL)
        goto nomem;
    s->leeway_s = 60;
    if (get_int(p, m, "jwt", "leeway", 0, 3600, &s->leeway_s) < 0)
        goto out;
    iss = jn_json_get(m, "issuers");
    if (!jn_json_is_array(iss) || jn_json_count(iss) == 0 || jn_json_count(iss) > WH_MAX_ISSUERS) {
        jn_errorf(p->err, p->errlen,
                  "webhook.jwt.issuers: expected a list of 1 to %d accepted iss values",
                  WH_MAX_ISSUERS);
        goto out;
    }
    for (const jn_json_t *v = jn_json_first(iss); v != NULL; v = jn_json_next(v)) {
        size_t len;
        const char *str = jn_json_string(v, &len);
        if (str == NULL || len == 0 || len > 256 || strlen(str) != len) {
            jn_errorf(p->err, p->errlen, "webhook.jwt.issuers: every entry must be a string");
            goto out;
        }
        if ((s->issuers[s->nissuers] = strdup(str)) == NULL)
            goto nomem;
        s->nissuers++;
    }
    rc = 0;
    goto out;
nomem:
    jn_errorf(p->err, p->errlen, "webhook: out of memory");
out:
    free(alg);
    return rc;
}

static int parse_challenge(const parse_t *p, jn_webhook_scheme_t *s)
{
    static const char *const allowed[] = {"method",   "detect",       "value",
                                          "response", "authenticate", NULL};
    static const char *const detect_allowed[] = {"header", "query", "json", "equals", NULL};
    static const char *const response_allowed[] = {"json", NULL};
    const unsigned any = SRC_ALLOW_HEADER | SRC_ALLOW_QUERY | SRC_ALLOW_JSON;
    const jn_json_t *m = member(p, "challenge"), *d, *v, *r;
    const char *text;
    size_t len;

    if (m == NULL)
        return 0;
    s->has_challenge = 1;
    s->challenge_authenticate = 1;
    if (want_object(p, m, "challenge") < 0 || only_members(p, m, "challenge", allowed) < 0 ||
        get_string(p, m, "challenge", "method", 16, &s->challenge_method) < 0 ||
        get_bool(p, m, "challenge", "authenticate", &s->challenge_authenticate) < 0)
        return -1;
    if (s->challenge_method != NULL && !header_name_ok(s->challenge_method))
        return jn_errorf(p->err, p->errlen, "webhook.challenge.method: not an HTTP method");
    if ((d = jn_json_get(m, "detect")) == NULL)
        return jn_errorf(p->err, p->errlen,
                         "webhook.challenge.detect is required: where the handshake shows, e.g. "
                         "{ header = \"...\" } or { json = \"type\", equals = \"...\" }");
    if (want_object(p, d, "challenge.detect") < 0 ||
        only_members(p, d, "challenge.detect", detect_allowed) < 0 ||
        source_parse(p, d, "challenge.detect", any, &s->challenge_detect) < 0 ||
        get_string(p, d, "challenge.detect", "equals", 256, &s->challenge_equals) < 0)
        return -1;
    if ((v = jn_json_get(m, "value")) != NULL) {
        static const char *const value_allowed[] = {"header", "query", "json", NULL};
        if (want_object(p, v, "challenge.value") < 0 ||
            only_members(p, v, "challenge.value", value_allowed) < 0 ||
            source_parse(p, v, "challenge.value", any, &s->challenge_value) < 0)
            return -1;
    } else if (s->challenge_equals != NULL) {
        return jn_errorf(p->err, p->errlen,
                         "webhook.challenge.value is required when detect has equals (where is "
                         "the value to echo?)");
    }
    if ((r = jn_json_get(m, "response")) == NULL)
        return jn_errorf(p->err, p->errlen,
                         "webhook.challenge.response is required: \"text\" or { json = "
                         "\"member\" }");
    if ((text = jn_json_string(r, &len)) != NULL) {
        if (strcmp(text, "text") != 0)
            return jn_errorf(p->err, p->errlen,
                             "webhook.challenge.response: expected \"text\" or { json = "
                             "\"member\" }");
        return 0;
    }
    if (want_object(p, r, "challenge.response") < 0 ||
        only_members(p, r, "challenge.response", response_allowed) < 0)
        return -1;
    if (get_string(p, r, "challenge.response", "json", 64, &s->challenge_json_name) <= 0) {
        if (s->challenge_json_name == NULL && jn_json_get(r, "json") == NULL)
            jn_errorf(p->err, p->errlen, "webhook.challenge.response.json is required");
        return -1;
    }
    for (const char *c = s->challenge_json_name; *c != '\0'; c++)
        if (*c == '"' || *c == '\\')
            return jn_errorf(p->err, p->errlen,
                             "webhook.challenge.response.json: quotes and backslashes are not "
                             "accepted in the member name");
    return 0;
}

/* ---- Declarations ------------------------------------------------------ */

static int check_members(const parse_t *p, int kind)
{
    char shown[SHOW_SIZE];
    for (const jn_json_t *m = jn_json_first(p->decl); m != NULL; m = jn_json_next(m)) {
        size_t len, i;
        const char *name = jn_json_name(m, &len);
        for (i = 0; i < sizeof(members) / sizeof(members[0]); i++)
            if (strlen(members[i].name) == len && memcmp(members[i].name, name, len) == 0)
                break;
        if (i == sizeof(members) / sizeof(members[0]))
            return jn_errorf(p->err, p->errlen,
                             "webhook: unknown member '%s' (known: scheme, algorithm, signature, "
                             "signed_content, secret_encoding, timestamp, token, jwt, "
                             "delivery_id, event_type, challenge)",
                             show(name, len, shown));
        if (!(members[i].kinds & (1u << kind)) && !jn_json_is_false(m))
            return jn_errorf(p->err, p->errlen, "webhook.%s does not apply to scheme %s",
                             members[i].name, kind_names[kind]);
    }
    return 0;
}

static int kind_parse(const char *name, size_t len)
{
    for (int i = 0; i < 3; i++)
        if (strlen(kind_names[i]) == len && memcmp(kind_names[i], name, len) == 0)
            return i;
    return -1;
}

static int scheme_build(parse_t *p, jn_webhook_scheme_t *s)
{
    const jn_json_t *m = jn_json_get(p->decl, "scheme");
    const char *name;
    size_t len;
    char shown[SHOW_SIZE], list[256] = "";

    if (!jn_json_is_object(p->decl))
        return jn_errorf(p->err, p->errlen, "webhook: expected a table (JSON object), got %s",
                         jn_json_type_name(p->decl));
    if ((name = jn_json_string(m, &len)) == NULL)
        return jn_errorf(p->err, p->errlen,
                         "webhook.scheme is required: a preset name or hmac, token, jwt");
    if ((s->kind = kind_parse(name, len)) < 0) {
        const preset_t *pre = preset_find(name, len);
        jn_json_t *root = NULL;
        if (pre == NULL) {
            for (size_t i = 0; i < PRESET_COUNT; i++) {
                strcat(list, ", ");
                strcat(list, presets[i].name);
            }
            return jn_errorf(p->err, p->errlen,
                             "webhook.scheme: '%s' is neither hmac, token, jwt nor a preset%s",
                             show(name, len, shown), list);
        }
        /* The presets are parsed here like any declaration; a test parses
         * each one. */
        if (jn_json_parse(pre->json, strlen(pre->json), NULL, &root, NULL) != JN_JSON_OK)
            return jn_errorf(p->err, p->errlen, "webhook: preset %s does not parse", pre->name);
        s->preset = pre->name;
        p->preset = root;
        const char *base = jn_json_string(jn_json_get(root, "scheme"), &len);
        s->kind = base != NULL ? kind_parse(base, len) : -1;
        if (s->kind < 0)
            return jn_errorf(p->err, p->errlen, "webhook: preset %s has no kind", pre->name);
    }
    if (check_members(p, s->kind) < 0)
        return -1;
    switch (s->kind) {
    case WH_KIND_HMAC:
        if (parse_algorithm(p, s) < 0 || parse_signature(p, s) < 0 || parse_template(p, s) < 0 ||
            parse_secret_encoding(p, s) < 0 || parse_timestamp(p, s) < 0)
            return -1;
        break;
    case WH_KIND_TOKEN:
        if (parse_token(p, s) < 0)
            return -1;
        break;
    default:
        if (parse_jwt(p, s) < 0)
            return -1;
        break;
    }
    const unsigned any = SRC_ALLOW_HEADER | SRC_ALLOW_QUERY | SRC_ALLOW_JSON;
    if (plain_source(p, "delivery_id", any, &s->delivery_id) < 0 ||
        plain_source(p, "event_type", any, &s->event_type) < 0 || parse_challenge(p, s) < 0)
        return -1;
    if (s->kind == WH_KIND_HMAC && template_has(s, WH_PART_ID) &&
        s->delivery_id.kind == WH_SRC_NONE)
        return jn_errorf(p->err, p->errlen,
                         "webhook.signed_content uses {id} but webhook.delivery_id is not "
                         "declared");
    return 0;
}

void jn_webhook_scheme_free(jn_webhook_scheme_t *s)
{
    if (s == NULL)
        return;
    free(s->sig_header);
    free(s->sig_prefix);
    free(s->separator);
    for (size_t i = 0; i < s->nparts; i++)
        free(s->parts[i].text);
    source_free(&s->timestamp);
    source_free(&s->token);
    free(s->token_prefix);
    free(s->jwt_header);
    free(s->jwt_prefix);
    for (size_t i = 0; i < s->nissuers; i++)
        free(s->issuers[i]);
    source_free(&s->delivery_id);
    source_free(&s->event_type);
    free(s->challenge_method);
    source_free(&s->challenge_detect);
    free(s->challenge_equals);
    source_free(&s->challenge_value);
    free(s->challenge_json_name);
    free(s);
}

int jn_webhook_scheme_from_json(const jn_json_t *decl, jn_webhook_scheme_t **scheme, char *err,
                                size_t errlen)
{
    parse_t p = {decl, NULL, err, errlen};
    jn_webhook_scheme_t *s;

    if (scheme == NULL)
        return jn_errorf(err, errlen, "jn_webhook_scheme_from_json: no output pointer");
    *scheme = NULL;
    if (decl == NULL)
        return jn_errorf(err, errlen, "webhook: no declaration");
    if ((s = calloc(1, sizeof(*s))) == NULL)
        return jn_errorf(err, errlen, "webhook: out of memory");
    int rc = scheme_build(&p, s);
    jn_json_free((jn_json_t *)p.preset);
    if (rc < 0) {
        jn_webhook_scheme_free(s);
        return -1;
    }
    *scheme = s;
    return 0;
}

int jn_webhook_scheme_parse(const char *json, size_t len, jn_webhook_scheme_t **scheme, char *err,
                            size_t errlen)
{
    jn_json_t *root = NULL;
    jn_json_error_t jerr;
    jn_json_limits_t limits = {65536, 4096, 8};

    if (scheme != NULL)
        *scheme = NULL;
    if (json == NULL || scheme == NULL)
        return jn_errorf(err, errlen, "jn_webhook_scheme_parse: no declaration or output pointer");
    if (jn_json_parse(json, len, &limits, &root, &jerr) != JN_JSON_OK)
        return jn_errorf(err, errlen, "webhook: declaration is not JSON: %s", jerr.message);
    int rc = jn_webhook_scheme_from_json(root, scheme, err, errlen);
    jn_json_free(root);
    return rc;
}

int jn_webhook_preset(const char *name, jn_webhook_scheme_t **scheme, char *err, size_t errlen)
{
    char decl[128];
    char shown[SHOW_SIZE];

    if (scheme != NULL)
        *scheme = NULL;
    if (name == NULL || scheme == NULL)
        return jn_errorf(err, errlen, "jn_webhook_preset: no name or output pointer");
    if (preset_find(name, strlen(name)) == NULL)
        return jn_errorf(err, errlen, "webhook: no preset named '%s'",
                         show(name, strlen(name), shown));
    snprintf(decl, sizeof(decl), "{\"scheme\":\"%s\"}", name);
    return jn_webhook_scheme_parse(decl, strlen(decl), scheme, err, errlen);
}

const char *jn_webhook_scheme_kind(const jn_webhook_scheme_t *s)
{
    return s != NULL ? kind_names[s->kind] : NULL;
}

const char *jn_webhook_scheme_preset(const jn_webhook_scheme_t *s)
{
    return s != NULL ? s->preset : NULL;
}
