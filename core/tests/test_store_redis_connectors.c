/* The cluster store's connector versions and deploys (store_redis_connectors.c):
 * two real SQLite stores (two nodes) with Redis attached, against the
 * redis-server of the ctest fixture (JUNCTION_TEST_REDIS_URL) under a key
 * prefix of each test:
 *   - what one node writes, the other reads: versions (binary-safe source,
 *     signature, re-signing), deploy rows with ids from one counter, the
 *     history newest first (per provider and in all), the live row of each
 *     provider, the highest id;
 *   - a deploy row for a version that is not stored is refused and writes
 *     nothing;
 *   - each stored row is published on the deploy channel (a subscriber
 *     connection beside the stores receives its id);
 *   - nothing of it lands in the nodes' own SQLite stores. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_redis_support.h"

#include <ftw.h>

#include "junction/store.h"
#include "junction/store_redis.h"

#include "test_tmpdir.h"

typedef struct {
    char dir[256];
    char prefix[160];
    jn_store_t *a, *b;
    redisContext *check;
} fixture_t;

static jn_store_t *open_node(fixture_t *f, const char *name)
{
    jn_store_redis_opts_t o = {0};
    char err[512] = "", path[320];
    jn_store_t *s;

    snprintf(path, sizeof(path), "%s/%s.db", f->dir, name);
    s = jn_store_open_sqlite(path, err, sizeof(err));
    if (s == NULL)
        fail_msg("open: %s", err);
    o.prefix = f->prefix;
    if (jn_store_attach_redis(s, rt_fixture_url(), &o, err, sizeof(err)) != 0)
        fail_msg("attach: %s", err);
    return s;
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    tt_tmpdir(f->dir, sizeof(f->dir), "jn-store-redis-conn");
    rt_prefix(f->prefix, sizeof(f->prefix), "connectors");
    f->a = open_node(f, "a");
    f->b = open_node(f, "b");
    f->check = rt_sync(rt_fixture_port());
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    jn_store_close(f->a);
    jn_store_close(f->b);
    redisFree(f->check);
    tt_rmtree(f->dir);
    free(f);
    return 0;
}

/* A source with a NUL byte and non-ASCII text: stored and read byte for byte. */
static const char source_v1[] = "return connector { version = '1.0.0' } -- caf\xc3\xa9\0tail";
#define SOURCE_V1_LEN (sizeof(source_v1) - 1)

static jn_connector_version_t version(const char *v, const char *sha, const char *src, size_t len,
                                      const char *sig, const char *key)
{
    jn_connector_version_t cv = {0};

    cv.provider = "github";
    cv.version = v;
    cv.name = "github.lua";
    cv.source_sha256 = sha;
    cv.source = src;
    cv.source_len = len;
    cv.signature = sig;
    cv.key_id = key;
    return cv;
}

static jn_connector_deploy_t row(const char *provider, const char *v, const char *sha,
                                 const char *action)
{
    jn_connector_deploy_t d = {0};

    d.provider = provider;
    d.version = v;
    d.source_sha256 = sha;
    d.action = action;
    d.actor = "test";
    return d;
}

typedef struct {
    char source[128];
    size_t len;
    char signature[64], key_id[32], version[16];
    int calls;
} got_version_t;

static int got_version_cb(void *ud, const jn_connector_version_t *v)
{
    got_version_t *g = ud;

    g->calls++;
    assert_true(v->source_len < sizeof(g->source));
    memcpy(g->source, v->source, v->source_len);
    g->len = v->source_len;
    snprintf(g->signature, sizeof(g->signature), "%s", v->signature ? v->signature : "(none)");
    snprintf(g->key_id, sizeof(g->key_id), "%s", v->key_id ? v->key_id : "(none)");
    snprintf(g->version, sizeof(g->version), "%s", v->version);
    return 0;
}

typedef struct {
    int64_t ids[16];
    char versions[16][16], providers[16][16];
    int n;
} rows_t;

static int rows_cb(void *ud, const jn_connector_deploy_t *d)
{
    rows_t *r = ud;

    assert_true(r->n < 16);
    r->ids[r->n] = d->id;
    snprintf(r->versions[r->n], sizeof(r->versions[0]), "%s", d->version);
    snprintf(r->providers[r->n], sizeof(r->providers[0]), "%s", d->provider);
    r->n++;
    return 0;
}

static void test_versions_shared_between_nodes(void **state)
{
    fixture_t *f = *state;
    jn_connector_version_t v = version("1.0.0", "aa11", source_v1, SOURCE_V1_LEN, NULL, NULL);
    got_version_t g = {0};

    assert_int_equal(jn_store_connector_version_get(f->b, "github", "aa11", got_version_cb, &g), 1);
    assert_int_equal(jn_store_connector_version_put(f->a, &v), 0);
    assert_int_equal(jn_store_connector_version_get(f->b, "github", "aa11", got_version_cb, &g), 0);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.len, SOURCE_V1_LEN);
    assert_memory_equal(g.source, source_v1, SOURCE_V1_LEN);
    assert_string_equal(g.signature, "(none)");
    assert_string_equal(g.version, "1.0.0");
    /* the same version again keeps its source; a signature given is recorded */
    v = version("1.0.0", "aa11", "other", 5, "sig-doc", "k1");
    assert_int_equal(jn_store_connector_version_put(f->b, &v), 0);
    assert_int_equal(jn_store_connector_version_get(f->a, "github", "aa11", got_version_cb, &g), 0);
    assert_memory_equal(g.source, source_v1, SOURCE_V1_LEN);
    assert_string_equal(g.signature, "sig-doc");
    assert_string_equal(g.key_id, "k1");
    assert_int_equal(rt_cmd_int(f->check, "EXISTS %sjn:connv:github:aa11", f->prefix), 1);
}

static void test_deploys_history_and_live(void **state)
{
    fixture_t *f = *state;
    jn_connector_version_t v1 = version("1.0.0", "aa11", "one", 3, NULL, NULL);
    jn_connector_version_t v2 = version("1.1.0", "bb22", "two", 3, NULL, NULL);
    jn_connector_version_t s1 = {0};
    jn_connector_deploy_t d;
    rows_t r = {0};
    int64_t last = -1;

    s1 = v1;
    s1.provider = "slack";
    assert_int_equal(jn_store_connector_deploy_last(f->b, &last), 0);
    assert_int_equal(last, 0);
    assert_int_equal(jn_store_connector_version_put(f->a, &v1), 0);
    assert_int_equal(jn_store_connector_version_put(f->a, &v2), 0);
    assert_int_equal(jn_store_connector_version_put(f->b, &s1), 0);
    d = row("github", "1.0.0", "aa11", "deploy");
    assert_int_equal(jn_store_connector_deploy_insert(f->a, &d), 0);
    assert_int_equal(d.id, 1);
    assert_true(d.deployed_ms > 0);
    d = row("slack", "1.0.0", "aa11", "deploy");
    assert_int_equal(jn_store_connector_deploy_insert(f->b, &d), 0);
    assert_int_equal(d.id, 2); /* one counter for every node */
    d = row("github", "1.1.0", "bb22", "deploy");
    assert_int_equal(jn_store_connector_deploy_insert(f->b, &d), 0);
    assert_int_equal(d.id, 3);
    d = row("github", "1.0.0", "aa11", "rollback");
    assert_int_equal(jn_store_connector_deploy_insert(f->a, &d), 0);
    assert_int_equal(d.id, 4);

    assert_int_equal(jn_store_connector_deploy_last(f->b, &last), 0);
    assert_int_equal(last, 4);
    assert_int_equal(jn_store_connector_deploy_each(f->b, "github", 0, rows_cb, &r), 0);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.ids[0], 4);
    assert_int_equal(r.ids[1], 3);
    assert_int_equal(r.ids[2], 1);
    memset(&r, 0, sizeof(r));
    assert_int_equal(jn_store_connector_deploy_each(f->a, "github", 1, rows_cb, &r), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.ids[0], 4);
    memset(&r, 0, sizeof(r));
    assert_int_equal(jn_store_connector_deploy_each(f->a, NULL, 0, rows_cb, &r), 0);
    assert_int_equal(r.n, 4);
    assert_int_equal(r.ids[0], 4);
    assert_int_equal(r.ids[3], 1);
    memset(&r, 0, sizeof(r));
    assert_int_equal(jn_store_connector_live_each(f->b, rows_cb, &r), 0);
    assert_int_equal(r.n, 2);
    for (int i = 0; i < 2; i++)
        assert_int_equal(r.ids[i], strcmp(r.providers[i], "github") == 0 ? 4 : 2);
    memset(&r, 0, sizeof(r));
    assert_int_equal(jn_store_connector_deploy_get(f->b, 3, rows_cb, &r), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.versions[0], "1.1.0");
    assert_int_equal(jn_store_connector_deploy_get(f->b, 99, rows_cb, &r), 1);
    /* nothing of it is in node a's own SQLite store */
    {
        char err[512], path[320];
        jn_store_t *plain;
        snprintf(path, sizeof(path), "%s/a.db", f->dir);
        plain = jn_store_open_sqlite(path, err, sizeof(err));
        assert_non_null(plain);
        assert_int_equal(jn_store_connector_deploy_last(plain, &last), 0);
        assert_int_equal(last, 0);
        jn_store_close(plain);
    }
}

static void test_row_for_missing_version_refused(void **state)
{
    fixture_t *f = *state;
    jn_connector_deploy_t d = row("github", "9.9.9", "ffff", "deploy");
    int64_t last = -1;

    assert_int_equal(jn_store_connector_deploy_insert(f->a, &d), -1);
    assert_non_null(strstr(jn_store_errmsg(f->a), "is not stored"));
    assert_int_equal(jn_store_connector_deploy_last(f->b, &last), 0);
    assert_int_equal(last, 0);
    assert_int_equal(rt_cmd_int(f->check, "EXISTS %sjn:clive", f->prefix), 0);
    /* a NULL member is refused before Redis is asked */
    d.actor = NULL;
    assert_int_equal(jn_store_connector_deploy_insert(f->a, &d), -1);
}

/* Two nodes compared their deploys with the same live version: the first to
 * write wins, the second is refused and changes nothing. */
static void test_racing_deploys_one_wins(void **state)
{
    fixture_t *f = *state;
    jn_connector_version_t v1 = version("1.0.0", "aa11", "one", 3, NULL, NULL);
    jn_connector_version_t v2 = version("1.1.0", "bb22", "two", 3, NULL, NULL);
    jn_connector_version_t v3 = version("1.2.0", "cc33", "three", 5, NULL, NULL);
    jn_connector_deploy_t d;
    rows_t r = {0};
    int64_t last = -1;

    assert_int_equal(jn_store_connector_version_put(f->a, &v1), 0);
    assert_int_equal(jn_store_connector_version_put(f->a, &v2), 0);
    assert_int_equal(jn_store_connector_version_put(f->b, &v3), 0);
    /* nothing live yet: both expect none, a writes first */
    d = row("github", "1.0.0", "aa11", "deploy");
    d.expected_live_id = -1;
    assert_int_equal(jn_store_connector_deploy_insert(f->a, &d), 0);
    assert_int_equal(d.id, 1);
    d = row("github", "1.2.0", "cc33", "deploy");
    d.expected_live_id = -1;
    assert_int_equal(jn_store_connector_deploy_insert(f->b, &d), -1);
    assert_non_null(strstr(jn_store_errmsg(f->b), "another deploy of github went live first"));
    /* both saw deploy 1 live: b wins this time, a is refused */
    d = row("github", "1.2.0", "cc33", "deploy");
    d.expected_live_id = 1;
    assert_int_equal(jn_store_connector_deploy_insert(f->b, &d), 0);
    assert_int_equal(d.id, 2);
    d = row("github", "1.1.0", "bb22", "deploy");
    d.expected_live_id = 1;
    assert_int_equal(jn_store_connector_deploy_insert(f->a, &d), -1);
    /* the refused ones left no row and did not move the live pointer */
    assert_int_equal(jn_store_connector_deploy_last(f->a, &last), 0);
    assert_int_equal(last, 2);
    assert_int_equal(jn_store_connector_live_each(f->a, rows_cb, &r), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.ids[0], 2);
    assert_string_equal(r.versions[0], "1.2.0");
}

static void test_stored_row_is_announced(void **state)
{
    fixture_t *f = *state;
    jn_connector_version_t v = version("1.0.0", "aa11", "one", 3, NULL, NULL);
    jn_connector_deploy_t d = row("github", "1.0.0", "aa11", "deploy");
    redisContext *sub = rt_sync(rt_fixture_port());
    char channel[256], small[4];
    redisReply *r;

    assert_int_equal(jn_store_redis_deploy_channel(f->a, small, sizeof(small)), -1);
    assert_int_equal(jn_store_redis_deploy_channel(f->a, channel, sizeof(channel)), 0);
    assert_non_null(strstr(channel, f->prefix));
    r = redisCommand(sub, "SUBSCRIBE %s", channel);
    assert_non_null(r);
    freeReplyObject(r);
    assert_int_equal(jn_store_connector_version_put(f->a, &v), 0);
    assert_int_equal(jn_store_connector_deploy_insert(f->a, &d), 0);
    assert_int_equal(redisGetReply(sub, (void **)&r), REDIS_OK);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 3);
    assert_string_equal(r->element[0]->str, "message");
    assert_string_equal(r->element[1]->str, channel);
    assert_string_equal(r->element[2]->str, "1");
    freeReplyObject(r);
    redisFree(sub);
}

static void test_channel_needs_redis(void **state)
{
    fixture_t *f = *state;
    char err[512], path[320], channel[64];
    jn_store_t *s;

    snprintf(path, sizeof(path), "%s/plain.db", f->dir);
    s = jn_store_open_sqlite(path, err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(jn_store_redis_deploy_channel(s, channel, sizeof(channel)), -1);
    jn_store_close(s);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_versions_shared_between_nodes),   T(test_deploys_history_and_live),
        T(test_row_for_missing_version_refused), T(test_racing_deploys_one_wins),
        T(test_stored_row_is_announced),         T(test_channel_needs_redis),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
