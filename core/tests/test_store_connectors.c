/* The connector registry's tables in the SQLite store (schema version 5):
 * versions keyed by provider and source hash, re-signing, the deploy rows and
 * what they answer (history, live version per provider, the highest id). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "junction/store.h"

#define SHA_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define SHA_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define SHA_C "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

typedef struct {
    char path[64];
    jn_store_t *s;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    char err[256];
    int fd;

    snprintf(f->path, sizeof(f->path), "/tmp/jn-store-conn-XXXXXX");
    fd = mkstemp(f->path);
    if (fd < 0)
        return -1;
    close(fd);
    f->s = jn_store_open_sqlite(f->path, err, sizeof(err));
    if (f->s == NULL)
        fail_msg("%s", err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    char p[80];

    jn_store_close(f->s);
    unlink(f->path);
    snprintf(p, sizeof(p), "%s-wal", f->path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", f->path);
    unlink(p);
    free(f);
    return 0;
}

static void put_version(jn_store_t *s, const char *provider, const char *version, const char *sha,
                        const char *source, const char *sig, const char *key)
{
    jn_connector_version_t v = {provider,       version, "x.lua", sha, source,
                                strlen(source), sig,     key,     0};

    if (jn_store_connector_version_put(s, &v) != 0)
        fail_msg("%s", jn_store_errmsg(s));
}

static int64_t deploy(jn_store_t *s, const char *provider, const char *version, const char *sha,
                      const char *action)
{
    jn_connector_deploy_t d = {0, provider, version, sha, action, "test", NULL, 0, 0};

    if (jn_store_connector_deploy_insert(s, &d) != 0)
        fail_msg("%s", jn_store_errmsg(s));
    assert_true(d.deployed_ms > 0);
    return d.id;
}

typedef struct {
    char source[64], sig[64], key[32], name[32];
    int calls;
} got_version_t;

static int got_version(void *ud, const jn_connector_version_t *v)
{
    got_version_t *g = ud;

    g->calls++;
    snprintf(g->source, sizeof(g->source), "%.*s", (int)v->source_len, v->source);
    snprintf(g->sig, sizeof(g->sig), "%s", v->signature ? v->signature : "(null)");
    snprintf(g->key, sizeof(g->key), "%s", v->key_id ? v->key_id : "(null)");
    snprintf(g->name, sizeof(g->name), "%s", v->name);
    return 0;
}

static void test_versions(void **state)
{
    fx_t *f = *state;
    got_version_t g = {0};
    jn_connector_version_t bad = {0};

    assert_int_equal(jn_store_schema_version(f->s), jn_store_sqlite_latest_version());
    put_version(f->s, "github", "1.0.0", SHA_A, "return 1", NULL, NULL);
    assert_int_equal(jn_store_connector_version_get(f->s, "github", SHA_A, got_version, &g), 0);
    assert_string_equal(g.source, "return 1");
    assert_string_equal(g.sig, "(null)");
    assert_string_equal(g.name, "x.lua");
    /* the same version again with a signature: the source stays, the
     * signature is recorded (re-signing) */
    put_version(f->s, "github", "1.0.0", SHA_A, "ignored", "SIG-1", "k1");
    assert_int_equal(jn_store_connector_version_get(f->s, "github", SHA_A, got_version, &g), 0);
    assert_string_equal(g.source, "return 1");
    assert_string_equal(g.sig, "SIG-1");
    assert_string_equal(g.key, "k1");
    /* and without one, the stored signature stays */
    put_version(f->s, "github", "1.0.0", SHA_A, "ignored", NULL, NULL);
    assert_int_equal(jn_store_connector_version_get(f->s, "github", SHA_A, got_version, &g), 0);
    assert_string_equal(g.sig, "SIG-1");
    assert_int_equal(jn_store_connector_version_get(f->s, "github", SHA_B, got_version, &g), 1);
    assert_int_equal(jn_store_connector_version_get(f->s, "okta", SHA_A, got_version, &g), 1);
    assert_int_equal(jn_store_connector_version_put(f->s, &bad), -1);
    assert_non_null(strstr(jn_store_errmsg(f->s), "provider, version, hash or source is NULL"));
    /* the hash column holds exactly 64 characters */
    put_version(f->s, "github", "1.0.1", SHA_B, "return 2", NULL, NULL);
    {
        jn_connector_version_t shorthash = {"github", "2.0.0", "x.lua", "abc", "x",
                                            1,        NULL,    NULL,    0};
        assert_int_equal(jn_store_connector_version_put(f->s, &shorthash), -1);
    }
}

typedef struct {
    int64_t ids[16];
    char versions[16][16];
    char providers[16][16];
    int n;
} rows_t;

static int got_row(void *ud, const jn_connector_deploy_t *d)
{
    rows_t *r = ud;

    r->ids[r->n] = d->id;
    snprintf(r->versions[r->n], sizeof(r->versions[0]), "%s", d->version);
    snprintf(r->providers[r->n], sizeof(r->providers[0]), "%s", d->provider);
    r->n++;
    return r->n == 16;
}

static void test_deploys(void **state)
{
    fx_t *f = *state;
    rows_t r;
    int64_t a, b, c, last = -1;

    assert_int_equal(jn_store_connector_deploy_last(f->s, &last), 0);
    assert_int_equal(last, 0);
    put_version(f->s, "github", "1.0.0", SHA_A, "a", NULL, NULL);
    put_version(f->s, "github", "1.1.0", SHA_B, "b", NULL, NULL);
    put_version(f->s, "okta", "0.1.0", SHA_C, "c", NULL, NULL);
    a = deploy(f->s, "github", "1.0.0", SHA_A, "deploy");
    b = deploy(f->s, "github", "1.1.0", SHA_B, "deploy");
    c = deploy(f->s, "okta", "0.1.0", SHA_C, "deploy");
    deploy(f->s, "github", "1.0.0", SHA_A, "rollback");
    assert_true(a < b && b < c);
    assert_int_equal(jn_store_connector_deploy_last(f->s, &last), 0);
    assert_int_equal(last, c + 1);

    /* a deploy row needs its version (foreign key) and a known action */
    {
        jn_connector_deploy_t d = {0, "github", "9.0.0", SHA_C, "deploy", "test", NULL, 0, 0};
        assert_int_equal(jn_store_connector_deploy_insert(f->s, &d), -1);
        d.source_sha256 = SHA_A;
        d.action = "delete";
        assert_int_equal(jn_store_connector_deploy_insert(f->s, &d), -1);
    }

    /* history: newest first, per provider, limited */
    memset(&r, 0, sizeof(r));
    assert_int_equal(jn_store_connector_deploy_each(f->s, "github", 0, got_row, &r), 0);
    assert_int_equal(r.n, 3);
    assert_string_equal(r.versions[0], "1.0.0");
    assert_string_equal(r.versions[1], "1.1.0");
    memset(&r, 0, sizeof(r));
    assert_int_equal(jn_store_connector_deploy_each(f->s, NULL, 2, got_row, &r), 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.ids[0], last);

    /* the live version of each provider: its newest row */
    memset(&r, 0, sizeof(r));
    assert_int_equal(jn_store_connector_live_each(f->s, got_row, &r), 0);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.providers[0], "github");
    assert_string_equal(r.versions[0], "1.0.0");
    assert_string_equal(r.providers[1], "okta");

    memset(&r, 0, sizeof(r));
    assert_int_equal(jn_store_connector_deploy_get(f->s, b, got_row, &r), 0);
    assert_string_equal(r.versions[0], "1.1.0");
    assert_int_equal(jn_store_connector_deploy_get(f->s, 12345, got_row, &r), 1);

    /* inside a transaction the rows join it: a rollback undoes them */
    assert_int_equal(jn_store_begin(f->s), 0);
    deploy(f->s, "okta", "0.1.0", SHA_C, "rollback");
    assert_int_equal(jn_store_rollback(f->s), 0);
    assert_int_equal(jn_store_connector_deploy_last(f->s, &last), 0);
    assert_int_equal(last, c + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deploys, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
