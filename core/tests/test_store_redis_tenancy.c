/* What the nodes of a cluster share through the cluster store
 * (store_redis_tenancy.c, change detection in store_redis.c), against the
 * redis-server of the ctest fixture (JUNCTION_TEST_REDIS_URL) under a key
 * prefix of each test. Two "nodes" are two SQLite stores in separate
 * directories attached to the same Redis and prefix: what one writes, the
 * other reads. The vault, the audit log and the change detection run for
 * real on top; a private redis-server stopped with SIGSTOP shows the
 * blocking connection failing fast while Redis hangs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_redis_support.h"

#include <fcntl.h>
#include <ftw.h>
#include <openssl/crypto.h>

#include "junction/audit.h"
#include "junction/keyprovider.h"
#include "junction/redis_block.h"
#include "junction/store.h"
#include "junction/store_redis.h"
#include "junction/vault.h"

#include "test_tmpdir.h"

/* Distinctive: must never be found in Redis. */
#define CANARY "canary-Zq8vX2-secret-do-not-store"

typedef struct {
    char dir[256];
    char prefix[160];
    jn_store_t *a, *b; /* two nodes */
    redisContext *check;
} fixture_t;

static jn_store_t *open_node(fixture_t *f, const char *name, int cluster)
{
    jn_store_redis_opts_t o = {0};
    char err[512] = "", path[400];
    jn_store_t *s;

    snprintf(path, sizeof(path), "%s/%s.db", f->dir, name);
    if ((s = jn_store_open_sqlite(path, err, sizeof(err))) == NULL)
        fail_msg("open: %s", err);
    o.prefix = f->prefix;
    if (cluster && jn_store_attach_redis(s, rt_fixture_url(), &o, err, sizeof(err)) != 0)
        fail_msg("attach: %s", err);
    return s;
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    tt_tmpdir(f->dir, sizeof(f->dir), "jn-store-tenancy");
    rt_prefix(f->prefix, sizeof(f->prefix), "tenancy");
    f->a = open_node(f, "node-a", 1);
    f->b = open_node(f, "node-b", 1);
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
    rt_kill_all();
    tt_rmtree(f->dir);
    free(f);
    return 0;
}

/* ---- integrations ---- */

static jn_integration_t integ(const char *id, const char *schedule)
{
    jn_integration_t it = {0};

    it.id = id;
    it.organization_id = "org-a";
    it.provider = "github";
    it.credential_id = "cred-1";
    it.config_json = "{\"org\":\"acme\"}";
    it.schedule = schedule;
    it.priority = "normal";
    it.enabled = 1;
    return it;
}

typedef struct {
    char ids[16][64];
    int64_t revs[16];
    int enabled[16];
    int n;
} seen_t;

static int collect_integ(void *ud, const jn_integration_t *it)
{
    seen_t *s = ud;

    assert_true(s->n < 16);
    snprintf(s->ids[s->n], sizeof(s->ids[0]), "%s", it->id);
    s->revs[s->n] = it->revision;
    s->enabled[s->n] = it->enabled;
    s->n++;
    return 0;
}

static int64_t revision_of(jn_store_t *s, const char *id)
{
    jn_integration_t got;
    char *strings = NULL;
    int64_t rev;

    assert_int_equal(jn_store_integration_get(s, id, &got, &strings), 0);
    rev = got.revision;
    free(strings);
    return rev;
}

/* Added on one node, seen (and changed, and deleted) from the other; the
 * scheduler's refresh by revision reads only what changed. */
static void test_integrations_shared_between_nodes(void **state)
{
    fixture_t *f = *state;
    jn_integration_t it = integ("gh-1", "1h"), got;
    jn_integration_filter_t since = {NULL, NULL, -1, 0, NULL};
    seen_t seen = {0};
    char *strings = NULL, *cursor = NULL;
    int changed = -1;
    int64_t rev1, rev2;

    assert_int_equal(jn_store_integration_insert(f->a, &it), 0);
    assert_int_equal(jn_store_integration_insert(f->b, &it), 1); /* the id exists */
    assert_int_equal(jn_store_integration_get(f->b, "gh-1", &got, &strings), 0);
    assert_string_equal(got.organization_id, "org-a");
    assert_string_equal(got.credential_id, "cred-1");
    assert_null(got.token_env);
    assert_null(got.connector_version);
    assert_string_equal(got.config_json, "{\"org\":\"acme\"}");
    assert_int_equal(got.enabled, 1);
    assert_true(got.created_ms > 0);
    rev1 = got.revision;
    assert_true(rev1 > 0);
    free(strings);

    /* the same again (an integrations file imported by every node): no write */
    assert_int_equal(jn_store_integration_upsert(f->b, &it, &changed), 0);
    assert_int_equal(changed, 0);
    assert_int_equal(revision_of(f->a, "gh-1"), rev1);
    /* another node's scheduler reads what changed since it last looked */
    it = integ("gh-2", "15m");
    it.enabled = -1; /* not named: enabled */
    assert_int_equal(jn_store_integration_upsert(f->b, &it, &changed), 0);
    assert_int_equal(changed, 1);
    since.after_revision = rev1;
    assert_int_equal(jn_store_integration_each(f->a, &since, collect_integ, &seen), 0);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.ids[0], "gh-2");
    assert_int_equal(seen.enabled[0], 1);
    rev2 = seen.revs[0];
    assert_true(rev2 > rev1);

    /* a change on node A raises the revision above every other */
    it = integ("gh-1", "30m");
    assert_int_equal(jn_store_integration_upsert(f->a, &it, &changed), 0);
    assert_int_equal(changed, 1);
    seen.n = 0;
    since.after_revision = rev2;
    assert_int_equal(jn_store_integration_each(f->b, &since, collect_integ, &seen), 0);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.ids[0], "gh-1");

    /* disabled on B: the refresh of A sees it disabled; an upsert without
     * "enabled" keeps the flag */
    assert_int_equal(jn_store_integration_set_enabled(f->b, "gh-1", 0), 0);
    assert_int_equal(jn_store_integration_set_enabled(f->b, "nope", 0), 1);
    it.enabled = -1;
    assert_int_equal(jn_store_integration_upsert(f->a, &it, &changed), 0);
    assert_int_equal(changed, 0);
    seen.n = 0;
    since.enabled = 0;
    since.after_revision = 0;
    assert_int_equal(jn_store_integration_each(f->a, &since, collect_integ, &seen), 0);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.ids[0], "gh-1");

    /* marking a slot keeps the revision, and the slot only grows */
    rev1 = revision_of(f->a, "gh-2");
    assert_int_equal(jn_store_integration_mark_slot(f->a, "gh-2", 5000), 0);
    assert_int_equal(jn_store_integration_mark_slot(f->b, "gh-2", 4000), 0);
    assert_int_equal(jn_store_integration_get(f->b, "gh-2", &got, &strings), 0);
    assert_int_equal(got.last_slot_ms, 5000);
    assert_int_equal(got.revision, rev1);
    free(strings);

    /* deleted on A: gone for B, its checkpoint with it */
    assert_int_equal(jn_store_checkpoint_set(f->b, "gh-1", "{\"page\":2}"), 0);
    assert_int_equal(jn_store_integration_delete(f->a, "gh-1"), 0);
    assert_int_equal(jn_store_integration_delete(f->a, "gh-1"), 1);
    assert_int_equal(jn_store_integration_get(f->b, "gh-1", &got, &strings), 1);
    assert_int_equal(jn_store_checkpoint_get(f->b, "gh-1", &cursor), 1);
    seen.n = 0;
    assert_int_equal(jn_store_integration_each(f->b, NULL, collect_integ, &seen), 0);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.ids[0], "gh-2");

    /* refused precisely */
    it = integ("gh-3", "1h");
    it.priority = "urgent";
    assert_int_equal(jn_store_integration_insert(f->a, &it), -1);
    assert_non_null(strstr(jn_store_errmsg(f->a), "priority"));
    it = integ("gh-3", "1h");
    it.token_env = "GH_TOKEN";
    assert_int_equal(jn_store_integration_insert(f->a, &it), -1);
    assert_non_null(strstr(jn_store_errmsg(f->a), "exclude"));
}

/* A listing longer than one page (200) comes back whole, in id order. */
static int count_cb(void *ud, const jn_integration_t *it)
{
    int *n = ud;

    (void)it;
    (*n)++;
    return 0;
}

static void test_integration_listing_pages(void **state)
{
    fixture_t *f = *state;
    char id[32];
    int i, n = 0;

    for (i = 0; i < 450; i++) {
        jn_integration_t it;
        snprintf(id, sizeof(id), "it-%04d", i);
        it = integ(id, "1h");
        assert_int_equal(jn_store_integration_insert(f->a, &it), 0);
    }
    assert_int_equal(jn_store_integration_each(f->b, NULL, count_cb, &n), 0);
    assert_int_equal(n, 450);
}

/* ---- the vault and the audit log ---- */

typedef struct {
    char dir[300];
    char keyfile[400];
    jn_keyprovider_t *kp;
} keys_t;

static void keys_open(fixture_t *f, keys_t *k)
{
    char err[512] = "", *line = NULL;
    int fd;

    snprintf(k->keyfile, sizeof(k->keyfile), "%s/master.keys", f->dir);
    assert_int_equal(jn_master_key_generate_line("k1", &line), 0);
    fd = open(k->keyfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, line, strlen(line)), (ssize_t)strlen(line));
    close(fd);
    OPENSSL_cleanse(line, strlen(line));
    free(line);
    if ((k->kp = jn_keyprovider_file_open(k->keyfile, err, sizeof(err))) == NULL)
        fail_msg("key file: %s", err);
}

static jn_vault_t *vault_on(jn_store_t *s, keys_t *k)
{
    char err[512] = "";
    jn_vault_t *v = jn_vault_create(s, k->kp, NULL, err, sizeof(err));

    if (v == NULL)
        fail_msg("vault: %s", err);
    return v;
}

/* 1 when `needle` occurs in any value under the prefix (every type read). */
static int redis_contains(fixture_t *f, const char *needle)
{
    redisReply *keys = rt_cmd(f->check, "KEYS %s*", f->prefix);
    int found = 0;
    size_t i, j;

    assert_int_equal(keys->type, REDIS_REPLY_ARRAY);
    for (i = 0; i < keys->elements && !found; i++) {
        const char *k = keys->element[i]->str;
        redisReply *t = rt_cmd(f->check, "TYPE %s", k), *v = NULL;
        if (strcmp(t->str, "string") == 0)
            v = rt_cmd(f->check, "GET %s", k);
        else if (strcmp(t->str, "hash") == 0)
            v = rt_cmd(f->check, "HGETALL %s", k);
        else if (strcmp(t->str, "zset") == 0)
            v = rt_cmd(f->check, "ZRANGE %s 0 -1", k);
        else if (strcmp(t->str, "set") == 0)
            v = rt_cmd(f->check, "SMEMBERS %s", k);
        freeReplyObject(t);
        if (strstr(k, needle) != NULL)
            found = 1;
        if (v == NULL)
            continue;
        if (v->type == REDIS_REPLY_STRING && memmem(v->str, v->len, needle, strlen(needle)))
            found = 1;
        for (j = 0; v->type == REDIS_REPLY_ARRAY && j < v->elements; j++)
            if (v->element[j]->type == REDIS_REPLY_STRING &&
                memmem(v->element[j]->str, v->element[j]->len, needle, strlen(needle)))
                found = 1;
        freeReplyObject(v);
    }
    freeReplyObject(keys);
    return found;
}

/* A credential put through node A's vault is decrypted by node B's; Redis
 * holds only ciphertext (the canary is nowhere in it, nor its hex). */
static void test_credentials_shared_without_plaintext(void **state)
{
    fixture_t *f = *state;
    keys_t k = {0};
    jn_vault_t *va, *vb;
    jn_secret_t got = {0};
    char id[JN_VAULT_ID_LEN], hex[2 * sizeof(CANARY) + 1], report[512];
    int64_t bad = 0;
    size_t i;

    keys_open(f, &k);
    va = vault_on(f->a, &k);
    vb = vault_on(f->b, &k);
    assert_int_equal(jn_vault_put(va, "org-a", "github", "api_key", CANARY, strlen(CANARY),
                                  "{\"label\":\"ci\"}", "test", id),
                     0);
    assert_int_equal(jn_vault_get(vb, "org-a", id, "test", &got), 0);
    assert_int_equal(got.len, strlen(CANARY));
    assert_memory_equal(got.data, CANARY, got.len);
    jn_secret_free(&got);
    /* another organization does not see it */
    assert_int_not_equal(jn_vault_get(vb, "org-b", id, "test", &got), 0);
    assert_int_equal(redis_contains(f, CANARY), 0);
    for (i = 0; i < strlen(CANARY); i++)
        snprintf(hex + 2 * i, 3, "%02x", (unsigned char)CANARY[i]);
    assert_int_equal(redis_contains(f, hex), 0);
    /* the local stores hold none of it: the vault's rows are in Redis */
    assert_int_equal(rt_cmd_int(f->check, "EXISTS %sjn:keyorgs", f->prefix), 1);
    /* rotated on B (a new version, promoted; then a new data key for the
     * organization, every credential re-encrypted): A decrypts the result */
    {
        jn_vault_rotation_stats_t st = {0};
        int64_t ver = 0;
        assert_int_equal(jn_vault_rotate_credential(vb, "org-a", id, CANARY "-2",
                                                    strlen(CANARY "-2"), NULL, "test", &ver),
                         0);
        assert_int_equal(ver, 2);
        assert_int_equal(jn_vault_promote(va, "org-a", id, ver, "test"), 0);
        assert_int_equal(jn_vault_rotate_org_key(vb, "org-a", "test", &st), 0);
        assert_int_equal(st.done, 2); /* the current and the previous version */
        assert_int_equal(jn_vault_get(va, "org-a", id, "test", &got), 0);
        assert_int_equal(got.len, strlen(CANARY "-2"));
        assert_memory_equal(got.data, CANARY "-2", got.len);
        jn_secret_free(&got);
        assert_int_equal(redis_contains(f, CANARY), 0);
    }
    /* deleted on B, gone for A */
    assert_int_equal(jn_vault_delete(vb, "org-a", id, "test"), 0);
    assert_int_not_equal(jn_vault_get(va, "org-a", id, "test", &got), 0);
    /* every access above went to one audit chain, intact from either node */
    assert_int_equal(jn_audit_verify(f->a, NULL, &bad, report, sizeof(report)), 0);
    assert_int_equal(jn_audit_verify(f->b, NULL, &bad, report, sizeof(report)), 0);
    jn_vault_destroy(va);
    jn_vault_destroy(vb);
    jn_keyprovider_destroy(k.kp);
}

/* Two nodes append in turns and race: one chain, no fork, no gap. The race
 * is made, not hoped for: node B appends between node A's read of the tail
 * and A's insert, and A's insert is refused, so the append retries. */
static void test_audit_chain_single_across_nodes(void **state)
{
    fixture_t *f = *state;
    jn_audit_event_t ev = {"test", "credential.access", "org-a", "cred-1", NULL, 0};
    jn_audit_record_t stale = {0};
    char err[512] = "", hash[65], prev[65], anchor[JN_AUDIT_ANCHOR_MAX], report[512];
    int64_t seq = 0, last = 0, bad = 0;
    int i;

    for (i = 0; i < 10; i++) {
        assert_int_equal(jn_audit_append(i % 2 ? f->a : f->b, &ev, &seq, err, sizeof(err)), 0);
        assert_int_equal(seq, i + 1);
    }
    /* A reads the tail, B appends, A's entry for the old tail is refused */
    assert_int_equal(jn_store_audit_last(f->a, &last, prev), 0);
    assert_int_equal(last, 10);
    assert_int_equal(jn_audit_append(f->b, &ev, &seq, err, sizeof(err)), 0);
    assert_int_equal(seq, 11);
    stale.seq = last + 1;
    stale.ts_ms = 1;
    stale.actor = "test";
    stale.action = "credential.access";
    stale.prev_hash = prev;
    assert_int_equal(jn_audit_hash(&stale, hash), 0);
    stale.hash = hash;
    assert_int_equal(jn_store_audit_insert(f->a, &stale), 1);
    assert_non_null(strstr(jn_store_errmsg(f->a), "another entry"));
    /* the append of A chains on the new tail */
    assert_int_equal(jn_audit_append(f->a, &ev, &seq, err, sizeof(err)), 0);
    assert_int_equal(seq, 12);
    assert_int_equal(jn_audit_anchor(f->b, anchor, err, sizeof(err)), 0);
    assert_int_equal(strncmp(anchor, "12:", 3), 0);
    assert_int_equal(jn_audit_verify(f->a, anchor, &bad, report, sizeof(report)), 0);
    /* an edit in Redis is found */
    rt_cmd_int(f->check, "HSET %sjn:audit:5 actor mallory", f->prefix);
    assert_int_equal(jn_audit_verify(f->b, anchor, &bad, report, sizeof(report)), 1);
    assert_int_equal(bad, 5);
}

typedef struct {
    int n;
    char label[64];
    size_t hash_len;
    int64_t revoked;
} token_seen_t;

static int token_cb(void *ud, const jn_api_token_t *t)
{
    token_seen_t *s = ud;

    s->n++;
    snprintf(s->label, sizeof(s->label), "%s", t->label ? t->label : "");
    s->hash_len = t->hash_len;
    s->revoked = t->revoked_ms;
    return 0;
}

static void test_api_tokens_shared(void **state)
{
    fixture_t *f = *state;
    uint8_t salt[16] = {1, 2, 3}, hash[32] = {0, 9, 8, 7};
    jn_api_token_t t = {"tok1", "org-a",      "write", salt, sizeof(salt),
                        hash,   sizeof(hash), "ci",    0,    0};
    token_seen_t seen = {0};

    assert_int_equal(jn_store_api_token_insert(f->a, &t), 0);
    assert_int_equal(jn_store_api_token_insert(f->b, &t), -1);
    assert_int_equal(jn_store_api_token_get(f->b, "tok1", token_cb, &seen), 0);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.label, "ci");
    assert_int_equal(seen.hash_len, sizeof(hash));
    assert_int_equal(jn_store_api_token_get(f->b, "tok2", token_cb, &seen), 1);
    seen.n = 0;
    assert_int_equal(jn_store_api_token_each(f->b, NULL, token_cb, &seen), 0);
    assert_int_equal(seen.n, 1);
    assert_int_equal(jn_store_api_token_revoke(f->b, "tok1", 1234), 0);
    assert_int_equal(jn_store_api_token_revoke(f->a, "tok1", 1300), 1);
    assert_int_equal(jn_store_api_token_get(f->a, "tok1", token_cb, &seen), 0);
    assert_int_equal(seen.revoked, 1234);
}

/* ---- change detection: the same runs, embedded and cluster ---- */

typedef struct {
    const char *run;
    int complete;
    const char *items; /* "resource=checksum ..." */
} run_spec_t;

static void put_run(jn_store_t *s, const run_spec_t *r, int64_t t, jn_job_changes_t *ch)
{
    char buf[256], *save = NULL, *tok, id[128];
    jn_job_record_t rec = {0};

    snprintf(buf, sizeof(buf), "%s", r->items);
    assert_int_equal(jn_store_begin(s), 0);
    for (tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        jn_evidence_t e = {0};
        *eq = '\0';
        snprintf(id, sizeof(id), "%s/%s", r->run, tok);
        e.id = id;
        e.organization_id = "org-a";
        e.integration_id = "gh-cd";
        e.provider_type = "github";
        e.resource_type = "github.repo";
        e.resource_id = tok;
        e.collected_at = "2026-11-25T10:00:00.000Z";
        e.run_id = r->run;
        e.connector_version = "1.0.0";
        e.checksum = eq + 1;
        e.data = "{}";
        assert_int_equal(jn_store_evidence_put(s, &e, NULL), 0);
    }
    assert_int_equal(jn_store_commit(s), 0);
    assert_int_equal(jn_store_job_changes_compute(s, r->run, "gh-cd", r->complete, ch), 0);
    rec.id = r->run;
    rec.organization_id = "org-a";
    rec.integration_id = "gh-cd";
    rec.provider_type = "github";
    rec.kind = "collect";
    rec.status = r->complete ? JN_JOB_SUCCEEDED : JN_JOB_PARTIAL;
    rec.created_ms = t;
    rec.started_ms = t;
    rec.finished_ms = t + 1;
    rec.added = ch->added;
    rec.changed = ch->changed;
    rec.removed = ch->removed;
    rec.baseline_job_id = ch->baseline_job_id[0] ? ch->baseline_job_id : NULL;
    assert_int_equal(jn_store_job_put(s, &rec), 0);
}

static int list_change(void *ud, const jn_job_change_t *c)
{
    char *out = ud;
    size_t n = strlen(out);

    snprintf(out + n, 512 - n, "%s:%s:%s ", c->change, c->resource_type, c->resource_id);
    return 0;
}

static void test_change_detection_matches_embedded(void **state)
{
    fixture_t *f = *state;
    static const run_spec_t runs[] = {
        {"run-1", 1, "a=1 b=1 c=1"},
        {"run-2", 1, "a=1 b=2 d=1"},     /* d added, b changed, c removed */
        {"run-3", 0, "a=2"},             /* partial: a changed, nothing removed */
        {"run-4", 1, "a=1 b=2 d=1 e=1"}, /* against run-2: e added */
        {"run-5", 1, "b=3 e=1"},         /* b changed, a and d removed */
    };
    static const char *const kinds[] = {NULL, "added", "changed", "removed"};
    jn_store_t *embedded = open_node(f, "embedded", 0);
    size_t i, k;

    for (i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
        jn_job_changes_t want, got;
        put_run(embedded, &runs[i], 1000 * (int64_t)(i + 1), &want);
        put_run(f->a, &runs[i], 1000 * (int64_t)(i + 1), &got);
        assert_int_equal(got.added, want.added);
        assert_int_equal(got.changed, want.changed);
        assert_int_equal(got.removed, want.removed);
        assert_string_equal(got.baseline_job_id, want.baseline_job_id);
        for (k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
            char lw[512] = "", lg[512] = "";
            assert_int_equal(
                jn_store_job_changes_each(embedded, runs[i].run, kinds[k], 0, list_change, lw), 0);
            /* listed from the other node */
            assert_int_equal(
                jn_store_job_changes_each(f->b, runs[i].run, kinds[k], 0, list_change, lg), 0);
            assert_string_equal(lg, lw);
        }
    }
    {
        /* the numbers themselves, not only their agreement */
        jn_job_changes_t ch;
        char l[512] = "";
        run_spec_t again = {"run-6", 1, "b=3 e=2 f=1"};
        put_run(f->b, &again, 9000, &ch);
        assert_int_equal(ch.added, 1);
        assert_int_equal(ch.changed, 1);
        assert_int_equal(ch.removed, 0);
        assert_string_equal(ch.baseline_job_id, "run-5");
        assert_int_equal(jn_store_job_changes_each(f->a, "run-6", NULL, 1, list_change, l), 0);
        assert_string_equal(l, "added:github.repo:f ");
    }
    jn_store_close(embedded);
}

/* ---- a Redis that hangs ---- */

/* Calls until one no longer fails at once with "unavailable" (the gate
 * opened); its error, or "" when it succeeded. */
static void call_after_backoff(jn_redis_block_t *c, char *err, size_t len)
{
    const char *ping[] = {"PING"};
    redisReply *r = NULL;
    int i;

    for (i = 0; i < 1500; i++) {
        err[0] = '\0';
        r = jn_redis_block_command(c, 1, ping, NULL, err, len);
        if (r != NULL || strstr(err, "unavailable") == NULL)
            break;
        usleep(10 * 1000);
    }
    if (r != NULL) {
        freeReplyObject(r);
        err[0] = '\0';
    }
}

static void test_hung_redis_fails_fast(void **state)
{
    rt_server_t srv = {0};
    jn_redis_block_opts_t o = {150, 150, 100, 400};
    const char *ping[] = {"PING"};
    char url[128], err[512] = "", why[512] = "";
    jn_redis_block_t *c, *other;
    redisReply *r;
    int i;

    (void)state;
    rt_server_start(&srv);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", srv.port);
    c = jn_redis_block_open(url, &o, err, sizeof(err));
    assert_non_null(c);
    other = jn_redis_block_open(url, &o, err, sizeof(err)); /* e.g. the queue's */
    assert_non_null(other);
    assert_int_equal(jn_redis_block_down(c, why, sizeof(why)), 0);
    kill(srv.pid, SIGSTOP);
    /* the first call waits out its timeout */
    assert_null(jn_redis_block_command(c, 1, ping, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "no reply within the command timeout"));
    assert_int_equal(jn_redis_block_down(c, why, sizeof(why)), 1);
    assert_non_null(strstr(why, "redis 127.0.0.1:"));
    /* the next ones fail at once, with a precise message; so do those of
     * another connection to the same server, which never sent anything */
    assert_null(jn_redis_block_command(c, 1, ping, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "is unavailable"));
    assert_int_equal(jn_redis_block_down(other, why, sizeof(why)), 1);
    assert_null(jn_redis_block_command(other, 1, ping, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "is unavailable"));
    /* while it hangs, no call waits again, however long it lasts: the gate's
     * prober thread PINGs it on a connection of its own every backoff period
     * (several pass during this loop) and only its reply opens the gate */
    for (i = 0; i < 150; i++) {
        assert_null(jn_redis_block_command(i % 2 ? c : other, 1, ping, NULL, err, sizeof(err)));
        assert_non_null(strstr(err, "is unavailable"));
        usleep(10 * 1000);
    }
    assert_int_equal(jn_redis_block_down(c, why, sizeof(why)), 1);
    /* resumed: once the prober had its reply, calls go through again */
    kill(srv.pid, SIGCONT);
    call_after_backoff(c, err, sizeof(err));
    assert_string_equal(err, "");
    assert_int_equal(jn_redis_block_down(c, why, sizeof(why)), 0);
    r = jn_redis_block_command(c, 1, ping, NULL, err, sizeof(err));
    assert_non_null(r);
    freeReplyObject(r);
    /* the other connection was never used while Redis hung: it answers */
    r = jn_redis_block_command(other, 1, ping, NULL, err, sizeof(err));
    assert_non_null(r);
    freeReplyObject(r);
    jn_redis_block_close(other);
    jn_redis_block_close(c);
    rt_server_stop(&srv);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_integrations_shared_between_nodes),
        T(test_integration_listing_pages),
        T(test_credentials_shared_without_plaintext),
        T(test_audit_chain_single_across_nodes),
        T(test_api_tokens_shared),
        T(test_change_detection_matches_embedded),
        T(test_hung_redis_fails_fast),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
