/* The connector registry against a real SQLite store and real sandboxed
 * jobs: hot deploys while jobs run (no job fails, each runs the version it
 * started with, replaced versions are freed once their jobs end), refused
 * deploys that change nothing, signatures in production mode (checked
 * before anything compiles), rollback, pins, a restart, a deploy made by
 * another process, and development mode's directory watch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "connector_sig.h"
#include "job.h"
#include "junction/clock.h"
#include "junction/config.h"
#include "junction/log.h"
#include "registry.h"
#include "runtime.h"

/* ---- fixtures ---- */

typedef struct {
    char dir[256];
    char db[300];
    jn_store_t *store;
    jn_registry_t *reg;
    jn_trusted_keys_t *keys;
} fx_t;

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static jn_store_t *open_store(fx_t *f)
{
    char err[512];
    jn_store_t *s = jn_store_open_sqlite(f->db, err, sizeof(err));

    if (s == NULL)
        fail_msg("store: %s", err);
    return s;
}

static jn_registry_t *open_registry(jn_store_t *store, jn_connector_mode_t mode,
                                    const jn_trusted_keys_t *keys, uv_loop_t *loop)
{
    jn_registry_opts_t o = {store, mode, keys, loop};
    char err[512];
    jn_registry_t *r = jn_registry_create(&o, err, sizeof(err));

    if (r == NULL)
        fail_msg("registry: %s", err);
    return r;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));

    snprintf(f->dir, sizeof(f->dir), "/tmp/jn-registry-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->db, sizeof(f->db), "%s/junction.db", f->dir);
    f->store = open_store(f);
    f->reg = open_registry(f->store, JN_CONNECTOR_DEVELOPMENT, NULL, NULL);
    jn_log_set_level(JN_LOG_ERROR);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;

    jn_registry_destroy(f->reg);
    jn_trusted_keys_free(f->keys);
    jn_store_close(f->store);
    nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* A connector whose collect_evidence waits a little and reports the version
 * it runs (and a marker of the source variant). */
static char *source(const char *provider, const char *version, const char *variant)
{
    char *s = NULL;

    if (asprintf(&s,
                 "local c = connector {\n"
                 "  provider_type = \"%s\", display_name = \"Deploy test\",\n"
                 "  description = \"reports the version it runs\", version = \"%s\",\n"
                 "  auth_types = { \"none\" }, capabilities = { \"evidence_collection\" },\n"
                 "  rate_limits = { requests_per_second = 10 }, egress = { \"example.invalid\" },\n"
                 "  documentation_url = \"https://example.invalid/docs\",\n"
                 "}\n"
                 "function c.test_connection() return { success = true } end\n"
                 "function c.collect_evidence(ctx)\n"
                 "  ctx.sleep(0.002)\n"
                 "  return { version = ctx.connector_version, variant = \"%s\" }\n"
                 "end\n"
                 "return c\n",
                 provider, version, variant) < 0)
        return NULL;
    return s;
}

static int deploy_src(jn_registry_t *r, const char *name, const char *src, const char *sig,
                      unsigned flags, jn_deploy_result_t *out, char *err, size_t errlen)
{
    jn_deploy_request_t req = {name,   src,   strlen(src), sig, sig ? strlen(sig) : 0,
                               "test", flags, NULL};

    return jn_registry_deploy(r, &req, out, err, errlen);
}

static void deploy_ok(jn_registry_t *r, const char *provider, const char *version,
                      const char *variant)
{
    jn_deploy_result_t out;
    char err[2048], *src = source(provider, version, variant);

    if (deploy_src(r, "deploytest.lua", src, NULL, 0, &out, err, sizeof(err)) != 0)
        fail_msg("deploy %s %s: %s", provider, version, err);
    assert_string_equal(out.version, version);
    free(src);
}

static const char *live_version(jn_registry_t *r, const char *provider)
{
    const jn_connector_t *c = jn_registry_live(r, provider);
    return c ? c->version : "(none)";
}

static int count_rows(void *ud, const jn_registry_history_t *h)
{
    (void)h;
    (*(int *)ud)++;
    return 0;
}

static int history_rows(jn_registry_t *r, const char *provider)
{
    char err[256];
    int n = 0;

    jn_registry_history(r, provider, 0, count_rows, &n, err, sizeof(err));
    return n;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = 0;

    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

/* ---- 100 deploys under load ---- */

#define IN_FLIGHT 16
#define DEPLOYS 100

typedef struct load load_t;

typedef struct {
    load_t *load;
    char version[32]; /* the version acquired when the job started */
    int busy;
} slot_t;

struct load {
    uv_loop_t loop;
    jn_runtime_t rt;
    jn_registry_t *reg;
    slot_t slots[IN_FLIGHT];
    uv_timer_t deploy_timer, kick;
    int deploys, stop_starting;
    long jobs_done, jobs_failed, version_mismatch, started_after_last;
    long warm_rss_kb;
    long alive_baseline;
    char failure[512];
};

static void start_job(load_t *l, slot_t *s);

static void job_done(void *ud, jn_job_t *job)
{
    slot_t *s = ud;
    load_t *l = s->load;
    const char *res = jn_job_result_json(job);
    char want[64];

    s->busy = 0;
    l->jobs_done++;
    if (jn_job_status(job) != JN_JOB_SUCCEEDED) {
        l->jobs_failed++;
        snprintf(l->failure, sizeof(l->failure), "%s", jn_job_error(job) ? jn_job_error(job) : "?");
    } else {
        /* the job reports the version it ran: the one it started with */
        snprintf(want, sizeof(want), "\"version\":\"%s\"", s->version);
        if (res == NULL || strstr(res, want) == NULL)
            l->version_mismatch++;
    }
}

static void on_kick(uv_timer_t *t)
{
    load_t *l = t->data;
    int i;

    for (i = 0; i < IN_FLIGHT && !l->stop_starting; i++)
        if (!l->slots[i].busy)
            start_job(l, &l->slots[i]);
}

static void start_job(load_t *l, slot_t *s)
{
    jn_job_opts_t o = {0};
    jn_connector_t *c;
    char err[512];

    c = jn_registry_acquire(l->reg, "deploytest", NULL, err, sizeof(err));
    if (c == NULL)
        fail_msg("acquire: %s", err);
    snprintf(s->version, sizeof(s->version), "%s", c->version);
    o.connector = c;
    o.entry = "collect_evidence";
    o.hooks = (jn_job_hooks_t){NULL, job_done, s};
    s->busy = 1;
    if (l->deploys >= DEPLOYS)
        l->started_after_last++;
    if (jn_job_start(&l->rt, &o, NULL, err, sizeof(err)) != 0)
        fail_msg("job: %s", err);
    jn_connector_unref(c); /* the job holds its own reference now */
}

static void on_deploy_tick(uv_timer_t *t)
{
    load_t *l = t->data;
    char version[32];

    if (l->deploys == 10)
        l->warm_rss_kb = rss_kb();
    if (l->deploys == DEPLOYS) {
        /* let the jobs started on the last version run, then stop */
        l->stop_starting = l->started_after_last >= 2 * IN_FLIGHT;
        if (l->stop_starting)
            uv_timer_stop(t);
        return;
    }
    l->deploys++;
    snprintf(version, sizeof(version), "1.%d.0", l->deploys);
    deploy_ok(l->reg, "deploytest", version, l->deploys % 2 ? "B" : "A");
    /* the swap is immediate: a job starting now gets the new version */
    assert_string_equal(live_version(l->reg, "deploytest"), version);
}

static void test_hundred_deploys_under_load(void **state)
{
    fx_t *f = *state;
    load_t *l = calloc(1, sizeof(*l));
    jn_config_t *cfg = jn_config_create();
    char err[512];
    long end_rss, tolerance_kb;
    int i;

    deploy_ok(f->reg, "deploytest", "1.0.0", "A");
    l->reg = f->reg;
    l->alive_baseline = jn_connector_alive();
    assert_int_equal(uv_loop_init(&l->loop), 0);
    if (jn_runtime_init(&l->rt, &l->loop, cfg, err, sizeof(err)) != 0)
        fail_msg("runtime: %s", err);
    for (i = 0; i < IN_FLIGHT; i++)
        l->slots[i].load = l;
    uv_timer_init(&l->loop, &l->deploy_timer);
    uv_timer_init(&l->loop, &l->kick);
    l->deploy_timer.data = l->kick.data = l;
    uv_timer_start(&l->deploy_timer, on_deploy_tick, 5, 5);
    uv_timer_start(&l->kick, on_kick, 0, 1); /* refills free slots continuously */
    while (!l->stop_starting || l->rt.jobs_running > 0) {
        uv_run(&l->loop, UV_RUN_ONCE);
        if (l->stop_starting)
            uv_timer_stop(&l->kick);
    }
    uv_close((uv_handle_t *)&l->deploy_timer, NULL);
    uv_close((uv_handle_t *)&l->kick, NULL);
    jn_runtime_close(&l->rt);
    uv_run(&l->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&l->loop), 0);
    jn_config_destroy(cfg);

    print_message("%ld jobs ran across %d deploys; %ld started on the last version\n", l->jobs_done,
                  l->deploys, l->started_after_last);
    assert_int_equal(l->deploys, DEPLOYS);
    if (l->jobs_failed)
        fail_msg("%ld of %ld jobs failed, e.g.: %s", l->jobs_failed, l->jobs_done, l->failure);
    assert_int_equal(l->version_mismatch, 0);
    assert_true(l->jobs_done > DEPLOYS);
    assert_string_equal(live_version(f->reg, "deploytest"), "1.100.0");
    assert_int_equal(history_rows(f->reg, "deploytest"), DEPLOYS + 1);
    /* every replaced version was freed once its last job ended: only the
     * live one remains */
    assert_int_equal(jn_registry_versions_held(f->reg), 1);
    assert_int_equal(jn_connector_alive(), l->alive_baseline);
    /* and the process's memory is back near where it was after warming up
     * (a sanitizer's quarantine keeps freed memory longer) */
    end_rss = rss_kb();
#if defined(__SANITIZE_ADDRESS__)
    tolerance_kb = 256 * 1024;
#else
    tolerance_kb = 16 * 1024;
#endif
    if (end_rss > l->warm_rss_kb + tolerance_kb)
        fail_msg("RSS grew from %ld kB to %ld kB over the deploys", l->warm_rss_kb, end_rss);
    free(l);
}

/* ---- refused deploys ---- */

static void expect_refused(jn_registry_t *r, const char *src, const char *sig, const char *needle)
{
    jn_deploy_result_t out;
    char err[4096];

    if (deploy_src(r, "deploytest.lua", src, sig, 0, &out, err, sizeof(err)) == 0)
        fail_msg("deploy accepted, expected a refusal with '%s'", needle);
    if (strstr(err, needle) == NULL)
        fail_msg("refusal '%s' does not say '%s'", err, needle);
}

static void test_broken_deploys_change_nothing(void **state)
{
    fx_t *f = *state;
    char *lower = source("deploytest", "0.9.0", "A"), *same = source("deploytest", "1.0.0", "B");
    char *missing_fn, *bad_meta;
    long alive;

    deploy_ok(f->reg, "deploytest", "1.0.0", "A");
    alive = jn_connector_alive();
    expect_refused(f->reg, "local c = connector { provider_type = 'deploytest' ", NULL,
                   "does not compile");
    missing_fn = source("deploytest", "1.1.0", "A");
    memcpy(strstr(missing_fn, "function c.collect_evidence"), "function c.collect_evidenze", 27);
    expect_refused(f->reg, missing_fn, NULL,
                   "function 'collect_evidence' is missing: capability 'evidence_collection' "
                   "requires it");
    expect_refused(f->reg, lower, NULL, "version 0.9.0 is not higher than the live version 1.0.0");
    expect_refused(f->reg, same, NULL, "version 1.0.0 is not higher than the live version 1.0.0");
    bad_meta = source("deploytest", "1.1", "A");
    expect_refused(f->reg, bad_meta, NULL, "field 'version': expected a semantic version");
    /* a caller that names the provider (an API route) gets only that one */
    {
        jn_deploy_request_t req = {"other.lua", lower, strlen(lower), NULL, 0, "api", 0, "okta"};
        jn_deploy_result_t out;
        char err[512];
        assert_int_equal(jn_registry_deploy(f->reg, &req, &out, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "declares provider_type 'deploytest', not 'okta'"));
    }
    /* nothing changed: the live version, the history, the versions in memory */
    assert_string_equal(live_version(f->reg, "deploytest"), "1.0.0");
    assert_int_equal(history_rows(f->reg, "deploytest"), 1);
    assert_int_equal(jn_connector_alive(), alive);
    /* a dry run validates without deploying */
    {
        jn_deploy_result_t out;
        char err[1024], *next = source("deploytest", "1.1.0", "A");
        assert_int_equal(
            deploy_src(f->reg, "deploytest.lua", next, NULL, JN_DEPLOY_DRY_RUN, &out, err, 1024),
            0);
        assert_string_equal(out.previous, "1.0.0");
        assert_string_equal(live_version(f->reg, "deploytest"), "1.0.0");
        assert_int_equal(history_rows(f->reg, "deploytest"), 1);
        /* the same source again changes nothing either */
        assert_int_equal(deploy_src(f->reg, "deploytest.lua", next, NULL, 0, &out, err, 1024), 0);
        assert_int_equal(deploy_src(f->reg, "deploytest.lua", next, NULL, 0, &out, err, 1024), 0);
        assert_int_equal(out.unchanged, 1);
        assert_int_equal(history_rows(f->reg, "deploytest"), 2);
        free(next);
    }
    free(lower);
    free(same);
    free(missing_fn);
    free(bad_meta);
}

/* ---- signatures ---- */

static void keygen(fx_t *f, const char *name, char *priv, char *pub, size_t len)
{
    char key_id[JN_CONNSIG_KEY_ID_LEN + 1], err[512];

    snprintf(priv, len, "%s/%s.pem", f->dir, name);
    snprintf(pub, len, "%s/%s.pub", f->dir, name);
    if (jn_connsig_keygen(priv, pub, key_id, err, sizeof(err)) != 0)
        fail_msg("keygen: %s", err);
}

static char *sign(const char *priv, const char *src, char *key_id)
{
    char err[512], *doc = NULL;

    if (jn_connsig_sign(priv, src, strlen(src), &doc, key_id, err, sizeof(err)) != 0)
        fail_msg("sign: %s", err);
    return doc;
}

static void test_production_requires_trusted_signatures(void **state)
{
    fx_t *f = *state;
    char priv[400], pub[400], opriv[400], opub[400], key_id[17], other_id[17], err[1024];
    char *src = source("deploytest", "1.0.0", "A"), *sig, *other_sig, *forged, *broken_sig;
    const char *pubs[1];
    jn_registry_opts_t o = {0};
    jn_deploy_result_t out;
    jn_registry_t *prod;

    keygen(f, "trusted", priv, pub, sizeof(priv));
    keygen(f, "other", opriv, opub, sizeof(opriv));
    pubs[0] = pub;
    f->keys = jn_trusted_keys_load(pubs, 1, err, sizeof(err));
    assert_non_null(f->keys);
    /* production without a trusted key is a configuration error */
    o.mode = JN_CONNECTOR_PRODUCTION;
    o.store = f->store;
    assert_null(jn_registry_create(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "connector_trusted_keys"));
    prod = open_registry(f->store, JN_CONNECTOR_PRODUCTION, f->keys, NULL);
    sig = sign(priv, src, key_id);
    other_sig = sign(opriv, src, other_id);

    expect_refused(prod, src, NULL, "deploytest.lua: unsigned");
    /* checked before compiling: an unsigned file with a syntax error is
     * refused for the signature, never compiled */
    expect_refused(prod, "local c = connector {", NULL, "unsigned");
    {
        char *syntax = "return {";
        char *ssig = sign(priv, syntax, key_id);
        jn_deploy_result_t o2;
        deploy_src(prod, "deploytest.lua", syntax, ssig, 0, &o2, err, sizeof(err));
        assert_non_null(strstr(err, "does not compile")); /* signed: now it is compiled */
        free(ssig);
    }
    expect_refused(prod, src, other_sig, "which is not one of the trusted keys");
    /* tampered: the file changed after it was signed */
    forged = strdup(src);
    forged[strlen(forged) - 3] = 'X';
    expect_refused(prod, forged, sig, "tampered: the file changed after it was signed");
    /* a signature that does not verify (its bytes changed) */
    broken_sig = strdup(sig);
    {
        char *b64 = strstr(broken_sig, "signature: ") + 11;
        b64[0] = b64[0] == 'A' ? 'B' : 'A';
    }
    expect_refused(prod, src, broken_sig, "bad signature");
    expect_refused(prod, src, "junction-connector-signature v1\nkey-id: xyz\n",
                   "malformed signature");
    assert_null(jn_registry_live(prod, "deploytest"));
    assert_int_equal(history_rows(prod, "deploytest"), 0);

    /* properly signed: deployed, the key recorded */
    assert_int_equal(deploy_src(prod, "deploytest.lua", src, sig, 0, &out, err, sizeof(err)), 0);
    assert_string_equal(out.key_id, key_id);
    assert_string_equal(live_version(prod, "deploytest"), "1.0.0");

    /* a restart in production verifies the stored signature again */
    jn_registry_destroy(prod);
    prod = open_registry(f->store, JN_CONNECTOR_PRODUCTION, f->keys, NULL);
    assert_int_equal(jn_registry_sync(prod), 1);
    assert_string_equal(live_version(prod, "deploytest"), "1.0.0");

    /* a version deployed unsigned in development mode does not load in
     * production; deploying the same source signed makes it live (re-signed) */
    {
        char *other = source("othertest", "1.0.0", "A"), *osig;
        jn_log_level_t level = jn_log_get_level();
        jn_deploy_result_t o2;

        assert_int_equal(deploy_src(f->reg, "othertest.lua", other, NULL, 0, &o2, err, 1024), 0);
        jn_log_set_level(JN_LOG_OFF);
        jn_registry_sync(prod);
        jn_log_set_level(level);
        assert_null(jn_registry_live(prod, "othertest"));
        osig = sign(priv, other, key_id);
        assert_int_equal(deploy_src(prod, "othertest.lua", other, osig, 0, &o2, err, 1024), 0);
        assert_int_equal(o2.unchanged, 0);
        assert_string_equal(live_version(prod, "othertest"), "1.0.0");
        assert_int_equal(history_rows(prod, "othertest"), 2); /* deploy, resign */
        free(other);
        free(osig);
    }
    jn_registry_destroy(prod);
    free(src);
    free(sig);
    free(other_sig);
    free(forged);
    free(broken_sig);
}

/* ---- rollback, pins, history ---- */

static void test_rollback(void **state)
{
    fx_t *f = *state;
    jn_deploy_result_t out;
    char err[1024];

    deploy_ok(f->reg, "deploytest", "1.0.0", "A");
    deploy_ok(f->reg, "deploytest", "1.1.0", "B");
    deploy_ok(f->reg, "deploytest", "1.2.0", "A");
    assert_int_equal(jn_registry_rollback(f->reg, "deploytest", NULL, "ops", &out, err, 1024), 0);
    assert_string_equal(out.version, "1.1.0");
    assert_string_equal(out.previous, "1.2.0");
    assert_string_equal(live_version(f->reg, "deploytest"), "1.1.0");
    assert_int_equal(jn_registry_rollback(f->reg, "deploytest", NULL, "ops", &out, err, 1024), 0);
    assert_string_equal(live_version(f->reg, "deploytest"), "1.0.0");
    assert_int_not_equal(jn_registry_rollback(f->reg, "deploytest", NULL, "ops", &out, err, 1024),
                         0);
    assert_non_null(strstr(err, "nothing to roll back to"));
    /* forward again to a version deployed before */
    assert_int_equal(jn_registry_rollback(f->reg, "deploytest", "1.2.0", "ops", &out, err, 1024),
                     0);
    assert_string_equal(live_version(f->reg, "deploytest"), "1.2.0");
    assert_int_not_equal(
        jn_registry_rollback(f->reg, "deploytest", "1.2.0", "ops", &out, err, 1024), 0);
    assert_non_null(strstr(err, "already live"));
    assert_int_not_equal(
        jn_registry_rollback(f->reg, "deploytest", "3.0.0", "ops", &out, err, 1024), 0);
    assert_non_null(strstr(err, "deploytest 3.0.0 was never deployed"));
    assert_int_not_equal(jn_registry_rollback(f->reg, "nosuch", NULL, "ops", &out, err, 1024), 0);
    assert_non_null(strstr(err, "no version of provider 'nosuch' was ever deployed"));
    assert_int_equal(history_rows(f->reg, "deploytest"), 6);
    /* a deploy after a rollback must beat the live (rolled back) version */
    deploy_ok(f->reg, "deploytest", "1.3.0", "B");
}

static void test_pins(void **state)
{
    fx_t *f = *state;
    jn_connector_t *a, *b, *c;
    char err[1024];

    deploy_ok(f->reg, "deploytest", "1.0.0", "A");
    deploy_ok(f->reg, "deploytest", "1.1.0", "B");
    a = jn_registry_acquire(f->reg, "deploytest", NULL, err, sizeof(err));
    b = jn_registry_acquire(f->reg, "deploytest", "1.0.0", err, sizeof(err));
    c = jn_registry_acquire(f->reg, "deploytest", "1.1.0", err, sizeof(err));
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(a->version, "1.1.0");
    assert_string_equal(b->version, "1.0.0"); /* loaded from the store's history */
    assert_ptr_equal(a, c);
    assert_non_null(strstr(b->source, "variant = \"A\""));
    assert_int_equal(jn_registry_versions_held(f->reg), 2);
    assert_null(jn_registry_acquire(f->reg, "deploytest", "2.0.0", err, sizeof(err)));
    assert_non_null(strstr(err, "pinned to connector version 2.0.0, but deploytest 1.1.0 is live"));
    assert_null(jn_registry_acquire(f->reg, "nosuch", NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "no connector for provider 'nosuch' is deployed"));
    jn_connector_unref(a);
    jn_connector_unref(b);
    jn_connector_unref(c);
}

/* ---- restart, other processes, start-up scan ---- */

static void write_text(const char *path, const char *text)
{
    FILE *out = fopen(path, "w");

    assert_non_null(out);
    fputs(text, out);
    fclose(out);
}

static void test_restart_and_other_processes(void **state)
{
    fx_t *f = *state;
    jn_deploy_result_t out;
    jn_registry_t *again, *other;
    jn_store_t *other_store;
    char err[1024], dir[400], path[500], *src;

    deploy_ok(f->reg, "deploytest", "1.0.0", "A");
    deploy_ok(f->reg, "deploytest", "1.1.0", "B");
    assert_int_equal(jn_registry_rollback(f->reg, "deploytest", NULL, "ops", &out, err, 1024), 0);

    /* a restart loads what the store says is live: the rolled-back version */
    again = open_registry(f->store, JN_CONNECTOR_DEVELOPMENT, NULL, NULL);
    assert_int_equal(jn_registry_sync(again), 1);
    assert_string_equal(live_version(again, "deploytest"), "1.0.0");
    /* the connectors directory still has 1.1.0: deployed before, so a restart
     * does not undo the rollback; a newer file is deployed */
    snprintf(dir, sizeof(dir), "%s/connectors", f->dir);
    mkdir(dir, 0700);
    snprintf(path, sizeof(path), "%s/deploytest.lua", dir);
    src = source("deploytest", "1.1.0", "B");
    write_text(path, src);
    free(src);
    assert_int_equal(jn_registry_scan_dir(again, dir, "connectors_dir"), 0);
    assert_string_equal(live_version(again, "deploytest"), "1.0.0");
    src = source("deploytest", "1.2.0", "A");
    write_text(path, src);
    free(src);
    assert_int_equal(jn_registry_scan_dir(again, dir, "connectors_dir"), 1);
    assert_string_equal(live_version(again, "deploytest"), "1.2.0");

    /* another process (its own store handle) deploys; sync picks it up */
    other_store = open_store(f);
    other = open_registry(other_store, JN_CONNECTOR_DEVELOPMENT, NULL, NULL);
    deploy_ok(other, "deploytest", "1.3.0", "B");
    assert_int_equal(jn_registry_sync(again), 1);
    assert_string_equal(live_version(again, "deploytest"), "1.3.0");
    assert_int_equal(jn_registry_sync(again), 0); /* nothing new */
    /* and a version the other one deployed, applied by its deploy id (the
     * entry point of a cluster announcement) */
    deploy_ok(other, "deploytest", "1.4.0", "A");
    {
        jn_deploy_result_t o2;
        char *s2 = source("deploytest", "1.5.0", "B");
        assert_int_equal(deploy_src(other, "x.lua", s2, NULL, 0, &o2, err, sizeof(err)), 0);
        assert_int_equal(jn_registry_apply_deploy(again, o2.deploy_id, err, sizeof(err)), 0);
        assert_string_equal(live_version(again, "deploytest"), "1.5.0");
        free(s2);
    }
    assert_int_not_equal(jn_registry_apply_deploy(again, 999999, err, sizeof(err)), 0);
    jn_registry_destroy(other);
    jn_store_close(other_store);
    jn_registry_destroy(again);
}

/* ---- listeners ---- */

typedef struct {
    int events, local;
    char last[64], previous[64], action[16];
} heard_t;

static void listener(void *ud, const jn_registry_event_t *ev)
{
    heard_t *h = ud;

    h->events++;
    h->local = ev->local;
    snprintf(h->last, sizeof(h->last), "%s", ev->version);
    snprintf(h->previous, sizeof(h->previous), "%s",
             ev->previous_version ? ev->previous_version : "");
    snprintf(h->action, sizeof(h->action), "%s", ev->action);
}

static void test_listeners(void **state)
{
    fx_t *f = *state;
    heard_t h = {0};
    jn_deploy_result_t out;
    char err[512];

    assert_int_equal(jn_registry_add_listener(f->reg, listener, &h), 0);
    deploy_ok(f->reg, "deploytest", "1.0.0", "A");
    deploy_ok(f->reg, "deploytest", "1.1.0", "B");
    assert_int_equal(h.events, 2);
    assert_int_equal(h.local, 1);
    assert_string_equal(h.last, "1.1.0");
    assert_string_equal(h.previous, "1.0.0");
    assert_int_equal(jn_registry_rollback(f->reg, "deploytest", NULL, "ops", &out, err, 512), 0);
    assert_string_equal(h.action, "rollback");
    assert_int_equal(h.events, 3);
}

/* ---- development mode: the directory watch ---- */

static void on_wait_timeout(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

/* Runs the loop until the live source of deploytest contains `marker`, or
 * timeout_ms passed. 0 when it does. */
static int wait_source(uv_loop_t *loop, jn_registry_t *r, const char *marker, uint64_t timeout_ms)
{
    const jn_connector_t *c;
    uv_timer_t t;
    int fired = 0;

    uv_timer_init(loop, &t);
    t.data = &fired;
    uv_timer_start(&t, on_wait_timeout, timeout_ms, 0);
    while (!fired &&
           ((c = jn_registry_live(r, "deploytest")) == NULL || !strstr(c->source, marker)))
        uv_run(loop, UV_RUN_ONCE);
    uv_timer_stop(&t);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    c = jn_registry_live(r, "deploytest");
    return c != NULL && strstr(c->source, marker) ? 0 : -1;
}

static void test_development_watch(void **state)
{
    fx_t *f = *state;
    uv_loop_t loop;
    jn_registry_t *dev;
    char dir[400], path[500], err[512], *src;

    snprintf(dir, sizeof(dir), "%s/watched", f->dir);
    mkdir(dir, 0700);
    snprintf(path, sizeof(path), "%s/deploytest.lua", dir);
    uv_loop_init(&loop);
    dev = open_registry(f->store, JN_CONNECTOR_DEVELOPMENT, NULL, &loop);
    assert_int_equal(jn_registry_watch(dev, dir, err, sizeof(err)), 0);
    src = source("deploytest", "1.0.0", "A");
    write_text(path, src);
    free(src);
    assert_int_equal(wait_source(&loop, dev, "variant = \"A\"", 5000), 0);
    /* a save without a version bump redeploys in development mode */
    src = source("deploytest", "1.0.0", "B");
    write_text(path, src);
    free(src);
    assert_int_equal(wait_source(&loop, dev, "variant = \"B\"", 5000), 0);
    assert_string_equal(live_version(dev, "deploytest"), "1.0.0");
    /* a broken save leaves the live version alone (the refusal is logged) */
    write_text(path, "local c = connector {");
    /* the loop runs past the debounce: nothing new goes live */
    assert_int_not_equal(wait_source(&loop, dev, "no source has this", 600), 0);
    assert_non_null(strstr(jn_registry_live(dev, "deploytest")->source, "variant = \"B\""));
    src = source("deploytest", "1.1.0", "C");
    write_text(path, src);
    free(src);
    assert_int_equal(wait_source(&loop, dev, "variant = \"C\"", 5000), 0);
    assert_string_equal(live_version(dev, "deploytest"), "1.1.0");
    jn_registry_close(dev);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    jn_registry_destroy(dev);
}

/* ---- semver ---- */

static void test_semver_compare(void **state)
{
    static const struct {
        const char *a, *b;
        int want;
    } cases[] = {
        {"1.0.0", "1.0.0", 0},
        {"1.0.1", "1.0.0", 1},
        {"1.10.0", "1.9.0", 1},
        {"2.0.0", "10.0.0", -1},
        {"1.0.0-alpha", "1.0.0", -1},
        {"1.0.0-alpha", "1.0.0-alpha.1", -1},
        {"1.0.0-alpha.1", "1.0.0-alpha.beta", -1},
        {"1.0.0-beta.2", "1.0.0-beta.11", -1},
        {"1.0.0-rc.1", "1.0.0-beta.11", 1},
        {"1.0.0+build.2", "1.0.0+build.1", 0},
        {"1.0.0-rc.1+b", "1.0.0-rc.1", 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = jn_semver_compare(cases[i].a, cases[i].b);
        if (got != cases[i].want || jn_semver_compare(cases[i].b, cases[i].a) != -cases[i].want)
            fail_msg("semver %s vs %s: got %d, want %d", cases[i].a, cases[i].b, got,
                     cases[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_semver_compare),
        cmocka_unit_test_setup_teardown(test_broken_deploys_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_production_requires_trusted_signatures, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_and_other_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listeners, setup, teardown),
        cmocka_unit_test_setup_teardown(test_development_watch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hundred_deploys_under_load, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
