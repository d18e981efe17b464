/* The operator's traffic policy file: defaults, per-provider settings and
 * per-organization rate limits layered on what connectors declare. See
 * junction/traffic.h (jn_traffic_policy_*) and docs/operations.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "junction/error.h"
#include "junction/json.h"
#include "junction/traffic.h"

#define POLICY_MAX_BYTES (1u << 20)
#define NRATE 5

static const char *const rate_keys[NRATE] = {"requests_per_second", "requests_per_minute",
                                             "requests_per_hour", "burst_size", "request_weight"};

typedef struct {
    int present[NRATE];
    double v[NRATE];
} rate_override_t;

typedef struct {
    char *org;
    rate_override_t rate;
} org_entry_t;

typedef struct {
    char *name;
    jn_traffic_provider_config_t cfg;
    rate_override_t rate;
    int scope; /* -1: not set */
    org_entry_t *orgs;
    size_t norgs;
} prov_entry_t;

struct jn_traffic_policy {
    jn_traffic_provider_config_t defaults;
    prov_entry_t *provs;
    size_t nprovs;
};

static int valid_name(const char *s, size_t n)
{
    if (n == 0 || n > 128)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

/* As the traffic layer accepts them: the platform's ids, any printable
 * ASCII but the braces of the Redis hash tag the lane's key is built with. */
static int valid_org(const char *s, size_t n)
{
    if (n == 0 || n > 128)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e || s[i] == '{' || s[i] == '}')
            return 0;
    return 1;
}

static int parse_rate(const jn_json_t *obj, const char *where, rate_override_t *out, char *err,
                      size_t errlen)
{
    if (!jn_json_is_object(obj))
        return jn_errorf(err, errlen, "%s.rate_limits: expected an object, got %s", where,
                         jn_json_type_name(obj));
    for (const jn_json_t *m = jn_json_first(obj); m; m = jn_json_next(m)) {
        const char *name = jn_json_name(m, NULL);
        double v;
        int i;
        for (i = 0; i < NRATE; i++)
            if (strcmp(name, rate_keys[i]) == 0)
                break;
        if (i == NRATE)
            return jn_errorf(err, errlen,
                             "%s.rate_limits: unknown key '%.64s' (expected requests_per_second, "
                             "requests_per_minute, requests_per_hour, burst_size, request_weight)",
                             where, name);
        if (jn_json_number(m, &v) != 0 || !isfinite(v) || v < 0 || v > JN_RATELIMIT_MAX_VALUE ||
            (i == 4 && v == 0))
            return jn_errorf(
                err, errlen, "%s.rate_limits.%s: expected a number from 0 to 1e9%s, got %s", where,
                rate_keys[i], i == 4 ? " (above 0)" : "",
                jn_json_is_number(m) ? "an out-of-range number" : jn_json_type_name(m));
        out->present[i] = 1;
        out->v[i] = v;
    }
    return 0;
}

static void apply_rate(const rate_override_t *o, jn_ratelimit_config_t *cfg)
{
    double *slots[NRATE] = {&cfg->per_second, &cfg->per_minute, &cfg->per_hour, &cfg->burst,
                            &cfg->weight};
    for (int i = 0; i < NRATE; i++)
        if (o->present[i])
            *slots[i] = o->v[i];
}

/* max_in_flight, timeouts, breaker, retry, adaptive: overlaid on *cfg. */
static int parse_provider_settings(const jn_json_t *obj, const char *where, int allow_rate,
                                   jn_traffic_provider_config_t *cfg, prov_entry_t *pe, char *err,
                                   size_t errlen)
{
    char sub[256];

    for (const jn_json_t *m = jn_json_first(obj); m; m = jn_json_next(m)) {
        const char *name = jn_json_name(m, NULL);
        int rc = 0;
        if (strcmp(name, "max_in_flight") == 0) {
            int64_t v;
            if (jn_json_int64(m, &v) != 0 || v < 1 || v > 100000)
                return jn_errorf(err, errlen,
                                 "%s.max_in_flight: expected an integer from 1 to 100000", where);
            cfg->max_in_flight = (unsigned)v;
            continue;
        }
        if (strcmp(name, "connect_timeout_ms") == 0 || strcmp(name, "timeout_ms") == 0) {
            int connect = name[0] == 'c';
            int64_t v, max = connect ? 600000 : 3600000;
            if (jn_json_int64(m, &v) != 0 || v < 0 || v > max)
                return jn_errorf(err, errlen,
                                 "%s.%s: expected an integer from 0 (the HTTP client's) to %lld",
                                 where, name, (long long)max);
            if (connect)
                cfg->connect_timeout_ms = (long)v;
            else
                cfg->timeout_ms = (long)v;
            continue;
        }
        if (strcmp(name, "breaker") == 0)
            rc = jn_breaker_config_from_json(m, &cfg->breaker, sub, sizeof sub);
        else if (strcmp(name, "retry") == 0)
            rc = jn_retry_config_from_json(m, &cfg->retry, sub, sizeof sub);
        else if (strcmp(name, "adaptive") == 0)
            rc = jn_adaptive_config_from_json(m, &cfg->adaptive, sub, sizeof sub);
        else if (allow_rate && strcmp(name, "rate_limits") == 0) {
            if (parse_rate(m, where, &pe->rate, err, errlen) != 0)
                return -1;
            continue;
        } else if (allow_rate && strcmp(name, "rate_limit_scope") == 0) {
            const char *s = jn_json_string(m, NULL);
            if (s && strcmp(s, "organization") == 0)
                pe->scope = JN_TRAFFIC_SCOPE_ORGANIZATION;
            else if (s && strcmp(s, "app") == 0)
                pe->scope = JN_TRAFFIC_SCOPE_APP;
            else
                return jn_errorf(err, errlen,
                                 "%s.rate_limit_scope: expected \"organization\" or \"app\"",
                                 where);
            continue;
        } else if (allow_rate && strcmp(name, "organizations") == 0) {
            continue; /* read by the caller */
        } else {
            return jn_errorf(err, errlen,
                             "%s: unknown key '%.64s' (expected max_in_flight, "
                             "connect_timeout_ms, timeout_ms, breaker, retry, adaptive%s)",
                             where, name,
                             allow_rate ? ", rate_limits, rate_limit_scope, organizations" : "");
        }
        if (rc != 0)
            return jn_errorf(err, errlen, "%s: %s", where, sub);
    }
    return jn_traffic_provider_config_validate(cfg, sub, sizeof sub) == 0
               ? 0
               : jn_errorf(err, errlen, "%s: %s", where, sub);
}

void jn_traffic_policy_free(jn_traffic_policy_t *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nprovs; i++) {
        for (size_t j = 0; j < p->provs[i].norgs; j++)
            free(p->provs[i].orgs[j].org);
        free(p->provs[i].orgs);
        free(p->provs[i].name);
    }
    free(p->provs);
    free(p);
}

static int parse_orgs(const jn_json_t *obj, const char *where, prov_entry_t *pe, char *err,
                      size_t errlen)
{
    char w[320];
    size_t n = jn_json_count(obj);

    if (!jn_json_is_object(obj))
        return jn_errorf(err, errlen, "%s.organizations: expected an object, got %s", where,
                         jn_json_type_name(obj));
    if (n && (pe->orgs = calloc(n, sizeof *pe->orgs)) == NULL)
        return jn_errorf(err, errlen, "out of memory");
    for (const jn_json_t *m = jn_json_first(obj); m; m = jn_json_next(m)) {
        size_t len;
        const char *org = jn_json_name(m, &len);
        org_entry_t *oe = &pe->orgs[pe->norgs];
        if (!valid_org(org, len))
            return jn_errorf(err, errlen,
                             "%s.organizations: '%.64s' is not an organization id (1-128 printable "
                             "ASCII characters other than space, '{' and '}')",
                             where, org);
        snprintf(w, sizeof w, "%s.organizations.%s", where, org);
        if (!jn_json_is_object(m))
            return jn_errorf(err, errlen, "%s: expected an object, got %s", w,
                             jn_json_type_name(m));
        for (const jn_json_t *k = jn_json_first(m); k; k = jn_json_next(k))
            if (strcmp(jn_json_name(k, NULL), "rate_limits") != 0)
                return jn_errorf(err, errlen, "%s: unknown key '%.64s' (expected rate_limits)", w,
                                 jn_json_name(k, NULL));
        if ((oe->org = strdup(org)) == NULL)
            return jn_errorf(err, errlen, "out of memory");
        pe->norgs++;
        if (jn_json_get(m, "rate_limits") &&
            parse_rate(jn_json_get(m, "rate_limits"), w, &oe->rate, err, errlen) != 0)
            return -1;
    }
    return 0;
}

jn_traffic_policy_t *jn_traffic_policy_parse(const char *json, size_t len, char *err, size_t errlen)
{
    return jn_traffic_policy_parse_over(json, len, NULL, err, errlen);
}

jn_traffic_policy_t *jn_traffic_policy_parse_over(const char *json, size_t len,
                                                  const jn_traffic_provider_config_t *base,
                                                  char *err, size_t errlen)
{
    jn_json_t *root = NULL;
    jn_json_error_t jerr;
    jn_traffic_policy_t *p = NULL;
    const jn_json_t *defs, *provs;
    char where[200];

    if (jn_json_parse(json, len, NULL, &root, &jerr) != 0) {
        jn_errorf(err, errlen, "not valid JSON: %s", jerr.message);
        return NULL;
    }
    if (!jn_json_is_object(root)) {
        jn_errorf(err, errlen, "expected a JSON object with \"defaults\" and \"providers\"");
        goto fail;
    }
    for (const jn_json_t *m = jn_json_first(root); m; m = jn_json_next(m)) {
        const char *name = jn_json_name(m, NULL);
        if (strcmp(name, "defaults") != 0 && strcmp(name, "providers") != 0) {
            jn_errorf(err, errlen, "unknown key '%.64s' (expected defaults, providers)", name);
            goto fail;
        }
    }
    if ((p = calloc(1, sizeof *p)) == NULL) {
        jn_errorf(err, errlen, "out of memory");
        goto fail;
    }
    if (base)
        p->defaults = *base;
    else
        jn_traffic_provider_config_init(&p->defaults);
    if ((defs = jn_json_get(root, "defaults")) != NULL) {
        if (!jn_json_is_object(defs)) {
            jn_errorf(err, errlen, "defaults: expected an object, got %s", jn_json_type_name(defs));
            goto fail;
        }
        if (parse_provider_settings(defs, "defaults", 0, &p->defaults, NULL, err, errlen) != 0)
            goto fail;
    }
    if ((provs = jn_json_get(root, "providers")) != NULL) {
        size_t n = jn_json_count(provs);
        if (!jn_json_is_object(provs)) {
            jn_errorf(err, errlen, "providers: expected an object, got %s",
                      jn_json_type_name(provs));
            goto fail;
        }
        if (n && (p->provs = calloc(n, sizeof *p->provs)) == NULL) {
            jn_errorf(err, errlen, "out of memory");
            goto fail;
        }
        for (const jn_json_t *m = jn_json_first(provs); m; m = jn_json_next(m)) {
            size_t nlen;
            const char *name = jn_json_name(m, &nlen);
            prov_entry_t *pe = &p->provs[p->nprovs];
            if (!valid_name(name, nlen)) {
                jn_errorf(err, errlen, "providers: '%.64s' is not a provider type", name);
                goto fail;
            }
            snprintf(where, sizeof where, "providers.%s", name);
            if (!jn_json_is_object(m)) {
                jn_errorf(err, errlen, "%s: expected an object, got %s", where,
                          jn_json_type_name(m));
                goto fail;
            }
            if ((pe->name = strdup(name)) == NULL) {
                jn_errorf(err, errlen, "out of memory");
                goto fail;
            }
            p->nprovs++;
            pe->cfg = p->defaults;
            pe->scope = -1;
            if (parse_provider_settings(m, where, 1, &pe->cfg, pe, err, errlen) != 0)
                goto fail;
            if (jn_json_get(m, "organizations") &&
                parse_orgs(jn_json_get(m, "organizations"), where, pe, err, errlen) != 0)
                goto fail;
        }
    }
    jn_json_free(root);
    return p;
fail:
    jn_json_free(root);
    jn_traffic_policy_free(p);
    return NULL;
}

jn_traffic_policy_t *jn_traffic_policy_load(const char *path, char *err, size_t errlen)
{
    return jn_traffic_policy_load_over(path, NULL, err, errlen);
}

jn_traffic_policy_t *jn_traffic_policy_load_over(const char *path,
                                                 const jn_traffic_provider_config_t *base,
                                                 char *err, size_t errlen)
{
    FILE *f;
    struct stat st;
    char *buf;
    size_t n;
    jn_traffic_policy_t *p;
    char sub[400];

    if ((f = fopen(path, "rb")) == NULL) {
        jn_errorf(err, errlen, "traffic file '%s': cannot open it", path);
        return NULL;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > POLICY_MAX_BYTES) {
        fclose(f);
        jn_errorf(err, errlen, "traffic file '%s': not a regular file of at most 1 MiB", path);
        return NULL;
    }
    if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
        fclose(f);
        jn_errorf(err, errlen, "out of memory");
        return NULL;
    }
    n = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    p = jn_traffic_policy_parse_over(buf, n, base, sub, sizeof sub);
    free(buf);
    if (!p)
        jn_errorf(err, errlen, "traffic file '%s': %s", path, sub);
    return p;
}

const jn_traffic_provider_config_t *jn_traffic_policy_defaults(const jn_traffic_policy_t *p)
{
    return &p->defaults;
}

int jn_traffic_policy_apply(const jn_traffic_policy_t *p, jn_traffic_t *t, char *err, size_t errlen)
{
    for (size_t i = 0; i < p->nprovs; i++)
        if (jn_traffic_set_provider(t, p->provs[i].name, &p->provs[i].cfg, err, errlen) != 0)
            return -1;
    return 0;
}

static const prov_entry_t *find_prov(const jn_traffic_policy_t *p, const char *provider)
{
    for (size_t i = 0; p && i < p->nprovs; i++)
        if (strcmp(p->provs[i].name, provider) == 0)
            return &p->provs[i];
    return NULL;
}

int jn_traffic_policy_rate(const jn_traffic_policy_t *p, const char *provider,
                           const char *organization, const jn_ratelimit_config_t *declared,
                           jn_ratelimit_config_t *out, jn_traffic_scope_t *scope, char *err,
                           size_t errlen)
{
    const prov_entry_t *pe = find_prov(p, provider);
    char sub[256];

    if (declared)
        *out = *declared;
    else
        jn_ratelimit_config_init(out);
    *scope = JN_TRAFFIC_SCOPE_ORGANIZATION;
    if (pe) {
        apply_rate(&pe->rate, out);
        if (pe->scope >= 0)
            *scope = (jn_traffic_scope_t)pe->scope;
        for (size_t j = 0; j < pe->norgs; j++)
            if (strcmp(pe->orgs[j].org, organization) == 0)
                apply_rate(&pe->orgs[j].rate, out);
    }
    if (out->per_second == 0 && out->per_minute == 0 && out->per_hour == 0)
        return 1; /* no limit at all */
    if (out->burst > 0 && out->per_second == 0)
        out->burst = 0; /* a burst only shapes the per-second window */
    if (jn_ratelimit_config_validate(out, sub, sizeof sub) != 0)
        return jn_errorf(err, errlen, "rate limits of provider '%s' for organization '%s': %s",
                         provider, organization, sub);
    return 0;
}
