#include "registry.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "junction/clock.h"
#include "junction/crypto.h"
#include "junction/error.h"
#include "junction/log.h"

/* Saves come as several events (write, rename of a temporary file): a file
 * is redeployed once it has been quiet this long. */
#define WATCH_DEBOUNCE_MS 150
#define MAX_PENDING_FILES 256

typedef struct {
    char *name;
    jn_connector_t *live; /* the registry's reference */
    char sha[65];
    char key_id[JN_CONNSIG_KEY_ID_LEN + 1];
    int64_t deploy_id;
    /* Versions loaded for pinned integrations (the registry's references). */
    jn_connector_t **pinned;
    size_t npinned;
} provider_t;

typedef struct {
    jn_registry_listener_fn fn;
    void *ud;
} listener_t;

struct jn_registry {
    jn_store_t *store;
    jn_connector_mode_t mode;
    const jn_trusted_keys_t *keys;
    uv_loop_t *loop;
    provider_t *providers;
    size_t nproviders;
    listener_t *listeners;
    size_t nlisteners;
    int64_t seen_deploy_id; /* the highest deploy id sync has applied */
    /* development mode: the watched directory */
    char *watch_dir;
    uv_fs_event_t fs_event;
    uv_timer_t debounce;
    int watching;
    char *pending[MAX_PENDING_FILES];
    size_t npending;
    uv_timer_t poll_timer;
    int polling;
};

/* A deploy row copied out of a store callback. */
typedef struct {
    int found;
    int64_t id;
    int64_t deployed_ms;
    char version[72];
    char sha[65];
    char key_id[JN_CONNSIG_KEY_ID_LEN + 1];
    char action[16];
    char actor[128];
} row_t;

/* A version compiled and checked, not yet live. */
typedef struct {
    jn_connector_t *conn;
    char sha[65];
    char key_id[JN_CONNSIG_KEY_ID_LEN + 1];
} prepared_t;

/* ---- helpers ---- */

static void sha256_hex(const char *src, size_t len, char out[65])
{
    uint8_t digest[JN_SHA256_LEN];

    if (jn_sha256(src, len, digest) != 0)
        memset(digest, 0, sizeof(digest));
    jn_hex_encode(digest, sizeof(digest), out);
}

/* The loader's problems ("file: problem\n" lines) into err, without the last newline. */
static int errors_to(char *err, size_t errlen, char *errors)
{
    size_t n;

    jn_errorf(err, errlen, "%s", errors ? errors : "out of memory");
    free(errors);
    n = strlen(err);
    while (n > 0 && err[n - 1] == '\n')
        err[--n] = '\0';
    return -1;
}

static provider_t *find_provider(const jn_registry_t *r, const char *name)
{
    size_t i;

    for (i = 0; i < r->nproviders; i++)
        if (strcmp(r->providers[i].name, name) == 0)
            return &r->providers[i];
    return NULL;
}

static provider_t *add_provider(jn_registry_t *r, const char *name)
{
    provider_t *grown;

    grown = realloc(r->providers, (r->nproviders + 1) * sizeof(*grown));
    if (grown == NULL)
        return NULL;
    r->providers = grown;
    memset(&grown[r->nproviders], 0, sizeof(*grown));
    grown[r->nproviders].name = strdup(name);
    if (grown[r->nproviders].name == NULL)
        return NULL;
    return &grown[r->nproviders++];
}

/* The providers' list lists deployed ones; the connector names may be long
 * in theory, so the message is cut rather than overflowing. */
static void deployed_list(const jn_registry_t *r, char *buf, size_t len)
{
    size_t i, used = 0;

    buf[0] = '\0';
    for (i = 0; i < r->nproviders && used + 2 < len; i++) {
        int n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", r->providers[i].name);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    if (r->nproviders == 0)
        snprintf(buf, len, "none");
}

/* ---- signatures and loading ---- */

typedef struct {
    const jn_registry_t *r;
    const char *sig;
    size_t siglen;
    char key_id[JN_CONNSIG_KEY_ID_LEN + 1];
} sig_check_t;

/* jn_connector_check_fn: runs before anything is compiled. Production
 * requires a trusted signature; development checks one when it has keys. */
static int sig_check(void *ud, const char *name, const char *src, size_t len, char *err,
                     size_t errlen)
{
    sig_check_t *c = ud;

    (void)name;
    c->key_id[0] = '\0';
    if (c->r->mode == JN_CONNECTOR_PRODUCTION ||
        (c->sig != NULL && jn_trusted_keys_count(c->r->keys) > 0))
        return jn_connsig_verify(c->r->keys, src, len, c->sig, c->siglen, c->key_id, err, errlen);
    return 0;
}

static int prepare(const jn_registry_t *r, const char *name, const char *src, size_t len,
                   const char *sig, size_t siglen, prepared_t *p, char *err, size_t errlen)
{
    sig_check_t c = {r, sig, siglen, ""};
    char *errors = NULL;

    memset(p, 0, sizeof(*p));
    p->conn = jn_connector_load_checked(name, src, len, sig_check, &c, &errors);
    if (p->conn == NULL)
        return errors_to(err, errlen, errors);
    free(errors);
    sha256_hex(src, len, p->sha);
    memcpy(p->key_id, c.key_id, sizeof(c.key_id));
    return 0;
}

typedef struct {
    char *name, *source, *signature;
    size_t source_len;
    int oom;
} stored_version_t;

static int copy_version_cb(void *ud, const jn_connector_version_t *v)
{
    stored_version_t *s = ud;

    s->name = strdup(v->name && *v->name ? v->name : v->provider);
    s->source = malloc(v->source_len + 1);
    s->signature = v->signature ? strdup(v->signature) : NULL;
    if (s->name == NULL || s->source == NULL || (v->signature && s->signature == NULL)) {
        s->oom = 1;
        return 0;
    }
    memcpy(s->source, v->source, v->source_len);
    s->source[v->source_len] = '\0';
    s->source_len = v->source_len;
    return 0;
}

/* Loads a version kept in the store, verified as at its deploy. */
static int load_stored(jn_registry_t *r, const char *provider, const char *sha, prepared_t *p,
                       char *err, size_t errlen)
{
    stored_version_t s = {0};
    int rc;

    rc = jn_store_connector_version_get(r->store, provider, sha, copy_version_cb, &s);
    if (rc != 0 || s.oom) {
        if (rc < 0)
            jn_errorf(err, errlen, "%s", jn_store_errmsg(r->store));
        else if (rc > 0)
            jn_errorf(err, errlen, "the store has no source for %s %.12s...", provider, sha);
        else
            jn_errorf(err, errlen, "out of memory");
        rc = -1;
    } else {
        rc = prepare(r, s.name, s.source, s.source_len, s.signature,
                     s.signature ? strlen(s.signature) : 0, p, err, errlen);
        if (rc == 0 && strcmp(p->sha, sha) != 0) {
            /* the store's own copy no longer matches its key: never run it */
            jn_connector_unref(p->conn);
            p->conn = NULL;
            rc = jn_errorf(err, errlen, "the stored source of %s %.12s... is corrupt", provider,
                           sha);
        }
        if (rc == 0 && strcmp(p->conn->provider_type, provider) != 0) {
            jn_errorf(err, errlen, "the stored source of %s declares provider '%s'", provider,
                      p->conn->provider_type);
            jn_connector_unref(p->conn);
            p->conn = NULL;
            rc = -1;
        }
    }
    free(s.name);
    free(s.source);
    free(s.signature);
    return rc;
}

/* ---- the store's rows ---- */

static int copy_row_cb(void *ud, const jn_connector_deploy_t *d)
{
    row_t *row = ud;

    row->found = 1;
    row->id = d->id;
    row->deployed_ms = d->deployed_ms;
    snprintf(row->version, sizeof(row->version), "%s", d->version);
    snprintf(row->sha, sizeof(row->sha), "%s", d->source_sha256);
    snprintf(row->key_id, sizeof(row->key_id), "%s", d->key_id ? d->key_id : "");
    snprintf(row->action, sizeof(row->action), "%s", d->action);
    snprintf(row->actor, sizeof(row->actor), "%s", d->actor);
    return 1; /* the first row is enough */
}

/* The provider's newest deploy row (its live version) in row->found. */
static int store_live_row(jn_registry_t *r, const char *provider, row_t *row, char *err,
                          size_t errlen)
{
    memset(row, 0, sizeof(*row));
    if (jn_store_connector_deploy_each(r->store, provider, 1, copy_row_cb, row) != 0)
        return jn_errorf(err, errlen, "%s", jn_store_errmsg(r->store));
    return 0;
}

typedef struct {
    const char *version; /* the wanted version; NULL: the highest below `below` */
    const char *below;
    row_t row;
} find_version_t;

static int find_version_cb(void *ud, const jn_connector_deploy_t *d)
{
    find_version_t *f = ud;

    if (f->version != NULL) {
        if (strcmp(d->version, f->version) != 0)
            return 0;
        copy_row_cb(&f->row, d);
        return 1;
    }
    /* rows come newest first: on equal versions the newest deploy wins */
    if (jn_semver_compare(d->version, f->below) < 0 &&
        (!f->row.found || jn_semver_compare(d->version, f->row.version) > 0))
        copy_row_cb(&f->row, d);
    return 0;
}

/* ---- going live ---- */

static void notify(jn_registry_t *r, const jn_registry_event_t *ev)
{
    size_t i;

    for (i = 0; i < r->nlisteners; i++)
        r->listeners[i].fn(r->listeners[i].ud, ev);
}

/* Swaps in p->conn (the reference moves to the registry). Jobs hold their
 * own references: the previous version lives on until its last job ends. */
static int set_live(jn_registry_t *r, prepared_t *p, const char *action, const char *actor,
                    int64_t deploy_id, int64_t deployed_ms, int local, char *prev_version,
                    size_t prevlen)
{
    provider_t *prov = find_provider(r, p->conn->provider_type);
    jn_connector_t *prev;
    jn_registry_event_t ev = {0};
    char id[24];

    if (prov == NULL && (prov = add_provider(r, p->conn->provider_type)) == NULL)
        return -1;
    prev = prov->live;
    prov->live = p->conn;
    p->conn = NULL;
    memcpy(prov->sha, p->sha, sizeof(prov->sha));
    memcpy(prov->key_id, p->key_id, sizeof(prov->key_id));
    prov->deploy_id = deploy_id;
    if (prev_version != NULL)
        snprintf(prev_version, prevlen, "%s", prev ? prev->version : "");
    ev.provider = prov->name;
    ev.version = prov->live->version;
    ev.previous_version = prev ? prev->version : NULL;
    ev.source_sha256 = prov->sha;
    ev.key_id = prov->key_id[0] ? prov->key_id : NULL;
    ev.action = action;
    ev.actor = actor;
    ev.deploy_id = deploy_id;
    ev.deployed_ms = deployed_ms > 0 ? deployed_ms : jn_now_ms();
    ev.local = local;
    snprintf(id, sizeof(id), "%lld", (long long)deploy_id);
    {
        jn_log_field_t f[] = {{"provider", ev.provider, 0},
                              {"version", ev.version, 0},
                              {"previous", prev ? prev->version : "", 0},
                              {"action", action, 0},
                              {"actor", actor, 0},
                              {"deploy_id", id, 1},
                              {"sha256", prov->sha, 0},
                              {"key_id", prov->key_id, 0}};
        jn_log_fields(JN_LOG_INFO, "connector live", f, 8);
    }
    notify(r, &ev);
    jn_connector_unref(prev);
    return 0;
}

/* ---- lifecycle ---- */

int jn_connector_mode_parse(const char *text, jn_connector_mode_t *mode)
{
    if (text != NULL && strcmp(text, "production") == 0)
        *mode = JN_CONNECTOR_PRODUCTION;
    else if (text == NULL || *text == '\0' || strcmp(text, "development") == 0)
        *mode = JN_CONNECTOR_DEVELOPMENT;
    else
        return -1;
    return 0;
}

jn_registry_t *jn_registry_create(const jn_registry_opts_t *opts, char *err, size_t errlen)
{
    jn_registry_t *r;

    if (opts->mode == JN_CONNECTOR_PRODUCTION && jn_trusted_keys_count(opts->keys) == 0) {
        jn_errorf(err, errlen,
                  "connector_mode = production needs connector_trusted_keys (the public keys "
                  "connectors must be signed with)");
        return NULL;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        jn_errorf(err, errlen, "out of memory");
        return NULL;
    }
    r->store = opts->store;
    r->mode = opts->mode;
    r->keys = opts->keys;
    r->loop = opts->loop;
    return r;
}

static void close_handle(uv_handle_t *h, int *open)
{
    if (*open && !uv_is_closing(h))
        uv_close(h, NULL);
    *open = 0;
}

void jn_registry_close(jn_registry_t *r)
{
    int debounce_open;

    if (r == NULL)
        return;
    debounce_open = r->watching;
    close_handle((uv_handle_t *)&r->fs_event, &r->watching);
    close_handle((uv_handle_t *)&r->debounce, &debounce_open);
    close_handle((uv_handle_t *)&r->poll_timer, &r->polling);
}

void jn_registry_destroy(jn_registry_t *r)
{
    size_t i, k;

    if (r == NULL)
        return;
    for (i = 0; i < r->nproviders; i++) {
        provider_t *p = &r->providers[i];
        jn_connector_unref(p->live);
        for (k = 0; k < p->npinned; k++)
            jn_connector_unref(p->pinned[k]);
        free(p->pinned);
        free(p->name);
    }
    for (i = 0; i < r->npending; i++)
        free(r->pending[i]);
    free(r->providers);
    free(r->listeners);
    free(r->watch_dir);
    free(r);
}

jn_connector_mode_t jn_registry_mode(const jn_registry_t *r)
{
    return r->mode;
}

int jn_registry_add_listener(jn_registry_t *r, jn_registry_listener_fn fn, void *ud)
{
    listener_t *grown = realloc(r->listeners, (r->nlisteners + 1) * sizeof(*grown));

    if (grown == NULL)
        return -1;
    r->listeners = grown;
    grown[r->nlisteners++] = (listener_t){fn, ud};
    return 0;
}

void jn_registry_remove_listener(jn_registry_t *r, jn_registry_listener_fn fn, void *ud)
{
    size_t i;

    for (i = 0; r != NULL && i < r->nlisteners; i++) {
        if (r->listeners[i].fn == fn && r->listeners[i].ud == ud) {
            memmove(&r->listeners[i], &r->listeners[i + 1],
                    (r->nlisteners - i - 1) * sizeof(*r->listeners));
            r->nlisteners--;
            return;
        }
    }
}

/* ---- deploys ---- */

/* The version rule: strictly higher than the live version (or equal with
 * JN_DEPLOY_SAME_VERSION). 1 when a start-up scan should skip silently. */
static int check_version(jn_registry_t *r, const prepared_t *p, const char *live_version,
                         unsigned flags, char *err, size_t errlen)
{
    int cmp;

    if (live_version == NULL || *live_version == '\0')
        return 0;
    cmp = jn_semver_compare(p->conn->version, live_version);
    if (cmp > 0 || (cmp == 0 && (flags & JN_DEPLOY_SAME_VERSION)))
        return 0;
    (void)r;
    return jn_errorf(err, errlen,
                     "%s: version %s is not higher than the live version %s of provider '%s'; "
                     "raise 'version' to deploy it (to go back to an earlier version use "
                     "`junction connector rollback %s VERSION`)",
                     p->conn->path, p->conn->version, live_version, p->conn->provider_type,
                     p->conn->provider_type);
}

/* Re-signing: the live source with a new signature. Stored; nothing swaps. */
static int resign(jn_registry_t *r, provider_t *prov, const prepared_t *p, const char *sig,
                  const char *actor, jn_deploy_result_t *out, char *err, size_t errlen)
{
    jn_connector_version_t v = {0};
    jn_connector_deploy_t d = {0};
    int own = !jn_store_in_transaction(r->store);

    v.provider = p->conn->provider_type;
    v.version = p->conn->version;
    v.name = p->conn->path;
    v.source_sha256 = p->sha;
    v.source = p->conn->source;
    v.source_len = p->conn->source_len;
    v.signature = sig;
    v.key_id = p->key_id;
    d.provider = v.provider;
    d.version = v.version;
    d.source_sha256 = p->sha;
    d.action = "resign";
    d.actor = actor;
    d.key_id = p->key_id;
    if ((own && jn_store_begin(r->store) != 0) || jn_store_connector_version_put(r->store, &v) ||
        jn_store_connector_deploy_insert(r->store, &d) != 0 ||
        (own && jn_store_commit(r->store) != 0)) {
        jn_errorf(err, errlen, "%s", jn_store_errmsg(r->store));
        if (own && jn_store_in_transaction(r->store))
            jn_store_rollback(r->store);
        return -1;
    }
    if (prov != NULL)
        memcpy(prov->key_id, p->key_id, sizeof(prov->key_id));
    out->deploy_id = d.id;
    return 0;
}

int jn_registry_deploy(jn_registry_t *r, const jn_deploy_request_t *req, jn_deploy_result_t *out,
                       char *err, size_t errlen)
{
    uint64_t t0 = jn_mono_ns();
    const char *actor = req->actor && *req->actor ? req->actor : "unknown";
    jn_connector_version_t v = {0};
    jn_connector_deploy_t d = {0};
    provider_t *prov;
    prepared_t p;
    row_t live;
    char why[1024];
    int own = 0, rc;

    memset(out, 0, sizeof(*out));
    if (req->source == NULL || req->name == NULL)
        return jn_errorf(err, errlen, "deploy: no source given");
    if (prepare(r, req->name, req->source, req->source_len, req->signature, req->signature_len, &p,
                err, errlen) != 0)
        return -1;
    out->validate_ms = (double)(jn_mono_ns() - t0) / 1e6;
    if (req->provider != NULL && strcmp(req->provider, p.conn->provider_type) != 0) {
        jn_errorf(err, errlen, "%s: declares provider_type '%s', not '%s'", req->name,
                  p.conn->provider_type, req->provider);
        goto fail;
    }
    snprintf(out->provider, sizeof(out->provider), "%s", p.conn->provider_type);
    snprintf(out->version, sizeof(out->version), "%s", p.conn->version);
    memcpy(out->sha256, p.sha, sizeof(out->sha256));
    memcpy(out->key_id, p.key_id, sizeof(out->key_id));
    prov = find_provider(r, p.conn->provider_type);

    /* Without a store only the memory's live version counts. */
    memset(&live, 0, sizeof(live));
    if (r->store == NULL && prov != NULL && prov->live != NULL) {
        live.found = 1;
        snprintf(live.version, sizeof(live.version), "%s", prov->live->version);
        memcpy(live.sha, prov->sha, sizeof(live.sha));
    }
    if (r->store != NULL) {
        /* The store's live version is the one to beat, read under the write
         * lock: two processes deploying at once cannot both win. In a
         * cluster the versions are in Redis, which this lock does not cover:
         * there the deploy row is written only if the live row is still the
         * one read here (expected_live_id), so two nodes deploying one
         * provider in the same instant cannot both pass. */
        own = !(req->flags & JN_DEPLOY_DRY_RUN) && !jn_store_in_transaction(r->store);
        if (own && jn_store_begin(r->store) != 0) {
            jn_errorf(err, errlen, "%s", jn_store_errmsg(r->store));
            goto fail;
        }
        if (store_live_row(r, p.conn->provider_type, &live, err, errlen) != 0)
            goto fail;
    }
    if (live.found && strcmp(live.sha, p.sha) == 0) {
        out->unchanged = 1;
        snprintf(out->previous, sizeof(out->previous), "%s", live.version);
        if (req->flags & JN_DEPLOY_DRY_RUN)
            goto done;
        /* the same source signed by another key: record the new signature */
        if (r->store && p.key_id[0] && strcmp(p.key_id, live.key_id) != 0) {
            if (own && jn_store_rollback(r->store) != 0)
                goto fail_store;
            own = 0;
            out->unchanged = 0;
            if (resign(r, prov, &p, req->signature, actor, out, err, errlen) != 0)
                goto fail;
        }
        /* the store's live version that is not live here (deployed by another
         * process and not polled yet, or refused when it was loaded, say
         * before it was signed): it is now */
        if (prov == NULL || prov->live == NULL || strcmp(prov->sha, p.sha) != 0)
            if (set_live(r, &p, live.action, live.actor, live.id, live.deployed_ms, 0, NULL, 0) !=
                0) {
                jn_errorf(err, errlen, "out of memory");
                goto fail;
            }
        goto done;
    }
    if ((req->flags & JN_DEPLOY_STARTUP) && r->store != NULL) {
        /* deployed before and replaced since (a newer deploy or a rollback):
         * a restart must not undo that */
        stored_version_t s = {0};
        rc = jn_store_connector_version_get(r->store, p.conn->provider_type, p.sha, copy_version_cb,
                                            &s);
        free(s.name);
        free(s.source);
        free(s.signature);
        if (rc < 0)
            goto fail_store;
        if (rc == 0) {
            out->unchanged = 1;
            snprintf(out->previous, sizeof(out->previous), "%s", live.version);
            goto done;
        }
    }
    if (check_version(r, &p, live.found ? live.version : NULL, req->flags, err, errlen) != 0) {
        if ((req->flags & JN_DEPLOY_STARTUP) && live.found) {
            jn_log_field_t f[] = {{"file", req->name, 0}, {"reason", err, 0}};
            jn_log_fields(JN_LOG_WARN, "connector not deployed", f, 2);
            out->unchanged = 1;
            snprintf(out->previous, sizeof(out->previous), "%s", live.version);
            err[0] = '\0';
            goto done;
        }
        goto fail;
    }
    if (req->flags & JN_DEPLOY_DRY_RUN) {
        snprintf(out->previous, sizeof(out->previous), "%s", live.found ? live.version : "");
        goto done;
    }
    if (r->store != NULL) {
        v.provider = p.conn->provider_type;
        v.version = p.conn->version;
        v.name = req->name;
        v.source_sha256 = p.sha;
        v.source = req->source;
        v.source_len = req->source_len;
        v.signature = p.key_id[0] ? req->signature : NULL;
        v.key_id = p.key_id[0] ? p.key_id : NULL;
        d.provider = v.provider;
        d.version = v.version;
        d.source_sha256 = p.sha;
        d.action = "deploy";
        d.actor = actor;
        d.key_id = v.key_id;
        d.expected_live_id = live.found ? live.id : -1;
        if (jn_store_connector_version_put(r->store, &v) != 0 ||
            jn_store_connector_deploy_insert(r->store, &d) != 0)
            goto fail_store;
        if (own && jn_store_commit(r->store) != 0)
            goto fail_store;
        own = 0;
    }
    out->deploy_id = d.id;
    snprintf(out->previous, sizeof(out->previous), "%s", live.found ? live.version : "");
    if (set_live(r, &p, "deploy", actor, d.id, d.deployed_ms, 1, NULL, 0) != 0) {
        jn_errorf(err, errlen, "out of memory");
        goto fail;
    }
done:
    if (own)
        jn_store_rollback(r->store);
    jn_connector_unref(p.conn);
    out->total_ms = (double)(jn_mono_ns() - t0) / 1e6;
    return 0;
fail_store:
    snprintf(why, sizeof(why), "%s", jn_store_errmsg(r->store));
    jn_errorf(err, errlen, "%s: the store refused the deploy: %s", req->name, why);
fail:
    if (own && jn_store_in_transaction(r->store))
        jn_store_rollback(r->store);
    jn_connector_unref(p.conn);
    return -1;
}

int jn_registry_deploy_file(jn_registry_t *r, const char *path, const char *actor, unsigned flags,
                            jn_deploy_result_t *out, char *err, size_t errlen)
{
    jn_deploy_request_t req = {0};
    char why[300], sigpath[4096], *src, *sig = NULL;
    size_t len = 0, siglen = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    src = jn_connector_read_file(path, &len, why, sizeof(why));
    if (src == NULL)
        return jn_errorf(err, errlen, "%s: %s", path, why);
    if ((size_t)snprintf(sigpath, sizeof(sigpath), "%s.sig", path) < sizeof(sigpath) &&
        access(sigpath, F_OK) == 0) {
        sig = jn_connector_read_file(sigpath, &siglen, why, sizeof(why));
        if (sig == NULL) {
            free(src);
            return jn_errorf(err, errlen, "%s: %s", sigpath, why);
        }
    }
    req.name = path;
    req.source = src;
    req.source_len = len;
    req.signature = sig;
    req.signature_len = siglen;
    req.actor = actor;
    req.flags = flags;
    rc = jn_registry_deploy(r, &req, out, err, errlen);
    free(src);
    free(sig);
    return rc;
}

int jn_registry_rollback(jn_registry_t *r, const char *provider, const char *version,
                         const char *actor, jn_deploy_result_t *out, char *err, size_t errlen)
{
    uint64_t t0 = jn_mono_ns();
    jn_connector_deploy_t d = {0};
    find_version_t f = {0};
    prepared_t p = {0};
    row_t live;
    char list[256];
    int own;

    memset(out, 0, sizeof(*out));
    if (r->store == NULL)
        return jn_errorf(err, errlen, "rollback needs the store (data_dir)");
    if (store_live_row(r, provider, &live, err, errlen) != 0)
        return -1;
    if (!live.found) {
        deployed_list(r, list, sizeof(list));
        return jn_errorf(err, errlen,
                         "no version of provider '%s' was ever deployed (live here: %s)", provider,
                         list);
    }
    f.version = version;
    f.below = live.version;
    if (jn_store_connector_deploy_each(r->store, provider, 0, find_version_cb, &f) != 0)
        return jn_errorf(err, errlen, "%s", jn_store_errmsg(r->store));
    if (!f.row.found) {
        if (version != NULL)
            return jn_errorf(err, errlen,
                             "%s %s was never deployed (see `junction connector history %s`)",
                             provider, version, provider);
        return jn_errorf(err, errlen,
                         "no version of %s lower than the live %s was deployed; nothing to roll "
                         "back to",
                         provider, live.version);
    }
    if (strcmp(f.row.sha, live.sha) == 0)
        return jn_errorf(err, errlen, "%s %s is already live", provider, f.row.version);
    if (load_stored(r, provider, f.row.sha, &p, err, errlen) != 0)
        return -1;
    out->validate_ms = (double)(jn_mono_ns() - t0) / 1e6;
    d.provider = provider;
    d.version = p.conn->version;
    d.source_sha256 = p.sha;
    d.action = "rollback";
    d.actor = actor && *actor ? actor : "unknown";
    d.key_id = p.key_id[0] ? p.key_id : NULL;
    own = !jn_store_in_transaction(r->store);
    if ((own && jn_store_begin(r->store) != 0) || jn_store_connector_deploy_insert(r->store, &d) ||
        (own && jn_store_commit(r->store) != 0)) {
        jn_errorf(err, errlen, "the store refused the rollback: %s", jn_store_errmsg(r->store));
        if (own && jn_store_in_transaction(r->store))
            jn_store_rollback(r->store);
        jn_connector_unref(p.conn);
        return -1;
    }
    snprintf(out->provider, sizeof(out->provider), "%s", provider);
    snprintf(out->version, sizeof(out->version), "%s", p.conn->version);
    memcpy(out->sha256, p.sha, sizeof(out->sha256));
    memcpy(out->key_id, p.key_id, sizeof(out->key_id));
    out->deploy_id = d.id;
    snprintf(out->previous, sizeof(out->previous), "%s", live.version);
    if (set_live(r, &p, "rollback", d.actor, d.id, d.deployed_ms, 1, NULL, 0) != 0) {
        jn_connector_unref(p.conn);
        return jn_errorf(err, errlen, "out of memory");
    }
    out->total_ms = (double)(jn_mono_ns() - t0) / 1e6;
    return 0;
}

typedef struct {
    jn_registry_history_fn fn;
    void *ud;
    int64_t newest;
    int n;
} history_t;

static int history_cb(void *ud, const jn_connector_deploy_t *d)
{
    history_t *h = ud;
    jn_registry_history_t row;

    if (h->n++ == 0)
        h->newest = d->id;
    row.deploy_id = d->id;
    row.provider = d->provider;
    row.version = d->version;
    row.source_sha256 = d->source_sha256;
    row.action = d->action;
    row.actor = d->actor;
    row.key_id = d->key_id;
    row.deployed_ms = d->deployed_ms;
    row.live = d->id == h->newest;
    return h->fn(h->ud, &row);
}

int jn_registry_history(jn_registry_t *r, const char *provider, int64_t limit,
                        jn_registry_history_fn fn, void *ud, char *err, size_t errlen)
{
    history_t h = {fn, ud, 0, 0};

    if (r->store == NULL)
        return jn_errorf(err, errlen, "the history needs the store (data_dir)");
    if (jn_store_connector_deploy_each(r->store, provider, limit, history_cb, &h) != 0)
        return jn_errorf(err, errlen, "%s", jn_store_errmsg(r->store));
    if (h.n == 0) {
        jn_errorf(err, errlen, "provider '%s' was never deployed", provider);
        return 1;
    }
    return 0;
}

/* ---- jobs ---- */

jn_connector_t *jn_registry_acquire(jn_registry_t *r, const char *provider, const char *pin,
                                    char *err, size_t errlen)
{
    provider_t *prov = find_provider(r, provider);
    find_version_t f = {0};
    jn_connector_t **grown;
    char list[256];
    prepared_t p;
    size_t i;

    if (prov == NULL || prov->live == NULL) {
        deployed_list(r, list, sizeof(list));
        jn_errorf(err, errlen, "no connector for provider '%s' is deployed (deployed: %s)",
                  provider, list);
        return NULL;
    }
    if (pin == NULL || *pin == '\0' || strcmp(pin, prov->live->version) == 0)
        return jn_connector_ref(prov->live);
    for (i = 0; i < prov->npinned; i++)
        if (strcmp(prov->pinned[i]->version, pin) == 0)
            return jn_connector_ref(prov->pinned[i]);
    f.version = pin;
    if (r->store == NULL ||
        jn_store_connector_deploy_each(r->store, provider, 0, find_version_cb, &f) != 0 ||
        !f.row.found) {
        jn_errorf(err, errlen,
                  "the integration is pinned to connector version %s, but %s %s is live and %s "
                  "%s was never deployed",
                  pin, provider, prov->live->version, provider, pin);
        return NULL;
    }
    if (load_stored(r, provider, f.row.sha, &p, err, errlen) != 0)
        return NULL;
    grown = realloc(prov->pinned, (prov->npinned + 1) * sizeof(*grown));
    if (grown == NULL) {
        jn_connector_unref(p.conn);
        jn_errorf(err, errlen, "out of memory");
        return NULL;
    }
    prov->pinned = grown;
    prov->pinned[prov->npinned++] = p.conn;
    {
        jn_log_field_t lf[] = {{"provider", provider, 0}, {"version", pin, 0}};
        jn_log_fields(JN_LOG_INFO, "pinned connector version loaded", lf, 2);
    }
    return jn_connector_ref(p.conn);
}

const jn_connector_t *jn_registry_live(const jn_registry_t *r, const char *provider)
{
    const provider_t *p = find_provider(r, provider);

    return p ? p->live : NULL;
}

size_t jn_registry_provider_count(const jn_registry_t *r)
{
    return r->nproviders;
}

const char *jn_registry_provider(const jn_registry_t *r, size_t i)
{
    return i < r->nproviders ? r->providers[i].name : NULL;
}

size_t jn_registry_versions_held(const jn_registry_t *r)
{
    size_t i, n = 0;

    for (i = 0; i < r->nproviders; i++)
        n += (r->providers[i].live != NULL) + r->providers[i].npinned;
    return n;
}

/* ---- the store ---- */

typedef struct {
    row_t *rows;
    char (*providers)[72];
    size_t n, cap;
    int oom;
} live_rows_t;

static int collect_live_cb(void *ud, const jn_connector_deploy_t *d)
{
    live_rows_t *l = ud;

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        row_t *rows = realloc(l->rows, cap * sizeof(*rows));
        char(*prov)[72];
        if (rows == NULL) {
            l->oom = 1;
            return 1;
        }
        l->rows = rows;
        prov = realloc(l->providers, cap * sizeof(*prov));
        if (prov == NULL) {
            l->oom = 1;
            return 1;
        }
        l->providers = prov;
        l->cap = cap;
    }
    memset(&l->rows[l->n], 0, sizeof(row_t));
    copy_row_cb(&l->rows[l->n], d);
    snprintf(l->providers[l->n], sizeof(l->providers[0]), "%s", d->provider);
    l->n++;
    return 0;
}

/* Makes a stored deploy row live unless it is already. 1 when it was. */
static int apply_row(jn_registry_t *r, const char *provider, const row_t *row, char *err,
                     size_t errlen)
{
    provider_t *prov = find_provider(r, provider);
    prepared_t p;

    if (prov != NULL && prov->live != NULL && strcmp(prov->sha, row->sha) == 0) {
        if (strcmp(row->action, "resign") == 0)
            memcpy(prov->key_id, row->key_id, sizeof(prov->key_id));
        prov->deploy_id = row->id;
        return 1;
    }
    if (load_stored(r, provider, row->sha, &p, err, errlen) != 0)
        return -1;
    if (set_live(r, &p, row->action, row->actor, row->id, row->deployed_ms, 0, NULL, 0) != 0) {
        jn_connector_unref(p.conn);
        return jn_errorf(err, errlen, "out of memory");
    }
    return 0;
}

int jn_registry_sync(jn_registry_t *r)
{
    live_rows_t l = {0};
    int64_t last = 0;
    char err[1024];
    int applied = 0;
    size_t i;

    if (r->store == NULL)
        return 0;
    if (jn_store_connector_deploy_last(r->store, &last) != 0) {
        jn_log_error("connector registry: %s", jn_store_errmsg(r->store));
        return -1;
    }
    if (last == r->seen_deploy_id)
        return 0;
    if (jn_store_connector_live_each(r->store, collect_live_cb, &l) != 0 || l.oom) {
        jn_log_error("connector registry: %s", l.oom ? "out of memory" : jn_store_errmsg(r->store));
        free(l.rows);
        free(l.providers);
        return -1;
    }
    for (i = 0; i < l.n; i++) {
        int rc = apply_row(r, l.providers[i], &l.rows[i], err, sizeof(err));
        if (rc == 0)
            applied++;
        if (rc < 0) {
            jn_log_field_t f[] = {{"provider", l.providers[i], 0},
                                  {"version", l.rows[i].version, 0},
                                  {"error", err, 0}};
            jn_log_fields(JN_LOG_ERROR, "deployed connector cannot be loaded", f, 3);
        }
    }
    r->seen_deploy_id = last;
    free(l.rows);
    free(l.providers);
    return applied;
}

typedef struct {
    row_t row;
    char provider[72];
} one_row_t;

static int copy_one_cb(void *ud, const jn_connector_deploy_t *d)
{
    one_row_t *o = ud;

    copy_row_cb(&o->row, d);
    snprintf(o->provider, sizeof(o->provider), "%s", d->provider);
    return 1;
}

int jn_registry_apply_deploy(jn_registry_t *r, int64_t deploy_id, char *err, size_t errlen)
{
    one_row_t o;
    int rc;

    memset(&o, 0, sizeof(o));
    if (r->store == NULL)
        return jn_errorf(err, errlen, "applying a deploy needs the store");
    rc = jn_store_connector_deploy_get(r->store, deploy_id, copy_one_cb, &o);
    if (rc != 0)
        return jn_errorf(err, errlen, "%s",
                         rc < 0 ? jn_store_errmsg(r->store) : "no deploy with that id");
    return apply_row(r, o.provider, &o.row, err, errlen) < 0 ? -1 : 0;
}

/* ---- the connectors directory ---- */

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);

    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One file: deployed, unchanged, or refused; logged either way. */
static int deploy_logged(jn_registry_t *r, const char *path, const char *actor, unsigned flags)
{
    jn_deploy_result_t out;
    char err[4096];

    if (jn_registry_deploy_file(r, path, actor, flags, &out, err, sizeof(err)) != 0) {
        jn_log_field_t f[] = {{"file", path, 0}, {"errors", err, 0}};
        jn_log_fields(JN_LOG_ERROR, "connector rejected", f, 2);
        return -1;
    }
    if (out.unchanged) {
        jn_log_field_t f[] = {{"file", path, 0},
                              {"provider", out.provider, 0},
                              {"version", out.version, 0},
                              {"live", out.previous, 0}};
        jn_log_fields(JN_LOG_DEBUG, "connector unchanged", f, 4);
        return 0;
    }
    {
        jn_log_field_t f[] = {
            {"provider", out.provider, 0}, {"version", out.version, 0}, {"file", path, 0}};
        jn_log_fields(JN_LOG_INFO, "connector loaded", f, 3);
    }
    return 1;
}

int jn_registry_scan_dir(jn_registry_t *r, const char *dir, const char *actor)
{
    unsigned flags = JN_DEPLOY_STARTUP;
    char **names = NULL, path[4096];
    size_t n = 0, cap = 0, i;
    struct dirent *e;
    int deployed = 0;
    DIR *d;

    if (r->mode == JN_CONNECTOR_DEVELOPMENT)
        flags |= JN_DEPLOY_SAME_VERSION;
    d = opendir(dir);
    if (d == NULL) {
        jn_log_warn("connectors directory '%s' cannot be read; no connectors loaded from it", dir);
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        if (!ends_with(e->d_name, ".lua") || e->d_name[0] == '.')
            continue;
        if (n == cap) {
            char **grown = realloc(names, (cap = cap ? cap * 2 : 16) * sizeof(*names));
            if (grown == NULL)
                break;
            names = grown;
        }
        if ((names[n] = strdup(e->d_name)) != NULL)
            n++;
    }
    closedir(d);
    if (n > 0)
        qsort(names, n, sizeof(*names), cmp_names);
    for (i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (deploy_logged(r, path, actor, flags) > 0)
            deployed++;
        free(names[i]);
    }
    free(names);
    return deployed;
}

static void on_debounce(uv_timer_t *t)
{
    jn_registry_t *r = t->data;
    char path[4096], actor[300];
    struct stat st;
    size_t i, n = r->npending;

    r->npending = 0;
    for (i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", r->watch_dir, r->pending[i]);
        snprintf(actor, sizeof(actor), "watch:%s", r->pending[i]);
        /* a removed file undeploys nothing: the live version stays */
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
            deploy_logged(r, path, actor, JN_DEPLOY_SAME_VERSION);
        free(r->pending[i]);
    }
}

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    jn_registry_t *r = h->data;
    char name[256];
    size_t i, len;

    (void)events;
    if (status < 0 || filename == NULL || filename[0] == '.')
        return;
    snprintf(name, sizeof(name), "%s", filename);
    len = strlen(name);
    if (ends_with(name, ".lua.sig"))
        name[len - 4] = '\0';
    else if (!ends_with(name, ".lua"))
        return;
    for (i = 0; i < r->npending; i++)
        if (strcmp(r->pending[i], name) == 0)
            break;
    if (i == r->npending && r->npending < MAX_PENDING_FILES) {
        r->pending[r->npending] = strdup(name);
        if (r->pending[r->npending] != NULL)
            r->npending++;
    }
    uv_timer_start(&r->debounce, on_debounce, WATCH_DEBOUNCE_MS, 0);
}

int jn_registry_watch(jn_registry_t *r, const char *dir, char *err, size_t errlen)
{
    int rc;

    if (r->loop == NULL)
        return jn_errorf(err, errlen, "watching needs an event loop");
    if (r->watching)
        return jn_errorf(err, errlen, "already watching '%s'", r->watch_dir);
    r->watch_dir = strdup(dir);
    if (r->watch_dir == NULL)
        return jn_errorf(err, errlen, "out of memory");
    uv_fs_event_init(r->loop, &r->fs_event);
    r->fs_event.data = r;
    rc = uv_fs_event_start(&r->fs_event, on_fs_event, dir, 0);
    if (rc != 0) {
        uv_close((uv_handle_t *)&r->fs_event, NULL);
        return jn_errorf(err, errlen, "cannot watch '%s': %s", dir, uv_strerror(rc));
    }
    uv_timer_init(r->loop, &r->debounce);
    r->debounce.data = r;
    r->watching = 1;
    return 0;
}

static void on_poll(uv_timer_t *t)
{
    jn_registry_sync(t->data);
}

int jn_registry_poll(jn_registry_t *r, uint64_t interval_ms, char *err, size_t errlen)
{
    if (r->loop == NULL)
        return jn_errorf(err, errlen, "polling needs an event loop");
    if (r->polling)
        return 0;
    uv_timer_init(r->loop, &r->poll_timer);
    r->poll_timer.data = r;
    uv_timer_start(&r->poll_timer, on_poll, interval_ms, interval_ms ? interval_ms : 1);
    r->polling = 1;
    return 0;
}
