/* The cluster store's connector versions and deploys (see store_redis_internal.h).
 *
 * Every node of a cluster loads the same connector versions: the registry
 * (runtime/src/registry.c) reads the live version of each provider and the
 * sources from here, so a deploy made on any node is seen by every node, and
 * a node started later loads the current versions. Keys (after the prefix):
 *
 *   jn:connv:{provider}:{sha256}  hash: a version (its source, signature,
 *                                 key id, version, file name, created)
 *   jn:cdeploy:seq                the last deploy id (INCR: ids only grow)
 *   jn:cdeploy:{id}               hash: a deploy row
 *   jn:cdeploys                   sorted set of every deploy id (score: the id)
 *   jn:cdeploys:{provider}        the same, per provider
 *   jn:clive                      hash: provider -> the id of its newest row
 *   jn:connectors:deploys         channel: a row's id once it is stored
 *
 * A version is written before the row that names it, and the row, the live
 * pointer and the announcement in one script: a node never reads a live
 * pointer whose row or source is missing, and never hears of a deploy it
 * cannot read yet. Sources and signatures are sent with their lengths
 * (binary-safe). Versions are kept for ever, like the local store's: a
 * rollback or a pin may need any of them.
 */
#include "store_redis_internal.h"

#include "junction/clock.h"
#include "junction/store_redis.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHANNEL "jn:connectors:deploys"
#define DEPLOY_PAGE 200

/* ARGV: prefix, provider, sha256, version, name, source, signature, key id,
 * created, has signature (0/1). An existing version keeps its source; a
 * signature given replaces the stored one (re-signing). */
static jn_redis_block_script_t version_put_script = JN_REDIS_BLOCK_SCRIPT(
    "local k = ARGV[1] .. 'jn:connv:' .. ARGV[2] .. ':' .. ARGV[3]\n"
    "if redis.call('EXISTS', k) == 0 then\n"
    "  redis.call('HSET', k, 'provider', ARGV[2], 'sha', ARGV[3], 'version', ARGV[4],\n"
    "    'name', ARGV[5], 'source', ARGV[6], 'created', ARGV[9])\n"
    "end\n"
    "if ARGV[10] == '1' then\n"
    "  redis.call('HSET', k, 'signature', ARGV[7], 'key_id', ARGV[8])\n"
    "end\n"
    "return 1\n");

/* ARGV: prefix, provider, version, sha256, action, actor, key id ("" none),
 * deployed, expected live row ("" unchecked, "none", or its id). The row,
 * the indexes, the live pointer and the announcement. Returns the row's id,
 * or an error when the version is not stored or another deploy went live
 * since the caller compared with the live version. */
static jn_redis_block_script_t deploy_insert_script = JN_REDIS_BLOCK_SCRIPT(
    "local P, prov = ARGV[1], ARGV[2]\n"
    "if redis.call('EXISTS', P .. 'jn:connv:' .. prov .. ':' .. ARGV[4]) == 0 then\n"
    "  return redis.error_reply('the version ' .. ARGV[3] .. ' of ' .. prov ..\n"
    "    ' is not stored (its source must be written first)')\n"
    "end\n"
    "if ARGV[9] ~= '' then\n"
    "  local cur = redis.call('HGET', P .. 'jn:clive', prov)\n"
    "  local want = ARGV[9] ~= 'none' and ARGV[9]\n"
    "  if cur ~= want then\n"
    "    return redis.error_reply('another deploy of ' .. prov .. ' went live first (deploy ' ..\n"
    "      tostring(cur) .. '); nothing changed: deploy again to compare with it')\n"
    "  end\n"
    "end\n"
    "local id = redis.call('INCR', P .. 'jn:cdeploy:seq')\n"
    "redis.call('HSET', P .. 'jn:cdeploy:' .. id, 'id', id, 'provider', prov,\n"
    "  'version', ARGV[3], 'sha', ARGV[4], 'action', ARGV[5], 'actor', ARGV[6],\n"
    "  'key_id', ARGV[7], 'deployed', ARGV[8])\n"
    "redis.call('ZADD', P .. 'jn:cdeploys', id, id)\n"
    "redis.call('ZADD', P .. 'jn:cdeploys:' .. prov, id, id)\n"
    "redis.call('HSET', P .. 'jn:clive', prov, id)\n"
    "redis.call('PUBLISH', P .. '" CHANNEL "', id)\n"
    "return id\n");

/* ARGV: prefix, index key (after the prefix), start, stop. The rows of that
 * page of the index, newest first. */
static jn_redis_block_script_t deploy_page_script = JN_REDIS_BLOCK_SCRIPT(
    "local P = ARGV[1]\n"
    "local out = {}\n"
    "for _, id in ipairs(redis.call('ZREVRANGE', P .. ARGV[2], ARGV[3], ARGV[4])) do\n"
    "  out[#out + 1] = redis.call('HGETALL', P .. 'jn:cdeploy:' .. id)\n"
    "end\n"
    "return out\n");

/* ARGV: prefix. The live row of every provider. */
static jn_redis_block_script_t live_script =
    JN_REDIS_BLOCK_SCRIPT("local P = ARGV[1]\n"
                          "local out = {}\n"
                          "local live = redis.call('HGETALL', P .. 'jn:clive')\n"
                          "for i = 2, #live, 2 do\n"
                          "  out[#out + 1] = redis.call('HGETALL', P .. 'jn:cdeploy:' .. live[i])\n"
                          "end\n"
                          "return out\n");

/* A text field of an HGETALL reply; NULL when absent. */
static const redisReply *field(const redisReply *pairs, const char *name)
{
    size_t i;

    if (pairs == NULL || pairs->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (i = 0; i + 1 < pairs->elements; i += 2)
        if (pairs->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(pairs->element[i]->str, name) == 0 &&
            pairs->element[i + 1]->type == REDIS_REPLY_STRING)
            return pairs->element[i + 1];
    return NULL;
}

static const char *field_str(const redisReply *pairs, const char *name)
{
    const redisReply *v = field(pairs, name);

    return v ? v->str : NULL;
}

static int64_t field_int(const redisReply *pairs, const char *name)
{
    const char *v = field_str(pairs, name);

    return v ? strtoll(v, NULL, 10) : 0;
}

/* A deploy row from HGETALL pairs (pointers into the reply). 1 when the
 * pairs are not a row (a row removed by hand). */
static int row_fill(const redisReply *pairs, jn_connector_deploy_t *d)
{
    const char *key_id = field_str(pairs, "key_id");

    memset(d, 0, sizeof(*d));
    d->id = field_int(pairs, "id");
    d->provider = field_str(pairs, "provider");
    d->version = field_str(pairs, "version");
    d->source_sha256 = field_str(pairs, "sha");
    d->action = field_str(pairs, "action");
    d->actor = field_str(pairs, "actor");
    d->key_id = key_id && *key_id ? key_id : NULL;
    d->deployed_ms = field_int(pairs, "deployed");
    return d->id > 0 && d->provider && d->version && d->source_sha256 && d->action && d->actor ? 0
                                                                                               : 1;
}

/* Calls fn for every row of an array of HGETALL replies; *stop when fn asked. */
static void rows_each(const redisReply *r, jn_store_connector_deploy_fn fn, void *ud, int64_t *seen,
                      int64_t limit, int *stop)
{
    jn_connector_deploy_t d;
    size_t i;

    for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements && !*stop; i++) {
        if (row_fill(r->element[i], &d) != 0)
            continue;
        if (fn(ud, &d) != 0 || (limit > 0 && ++*seen >= limit))
            *stop = 1;
    }
}

static int cl_connector_version_put(jn_store_t *s, const jn_connector_version_t *v)
{
    const char *argv[10];
    size_t lens[10];
    char created[24];
    char err[512];
    redisReply *r;
    int i;

    if (v->provider == NULL || v->version == NULL || v->source_sha256 == NULL || v->source == NULL)
        return jn_sr_fail(s, "connector_version_put", "provider, version, hash or source is NULL");
    snprintf(created, sizeof(created), "%" PRId64, v->created_ms > 0 ? v->created_ms : jn_now_ms());
    argv[0] = jn_sr(s)->prefix;
    argv[1] = v->provider;
    argv[2] = v->source_sha256;
    argv[3] = v->version;
    argv[4] = v->name ? v->name : "";
    argv[5] = v->source;
    argv[6] = v->signature ? v->signature : "";
    argv[7] = v->key_id ? v->key_id : "";
    argv[8] = created;
    argv[9] = v->signature ? "1" : "0";
    for (i = 0; i < 10; i++)
        lens[i] = strlen(argv[i]);
    lens[5] = v->source_len;
    r = jn_redis_block_script(jn_sr(s)->conn, &version_put_script, 0, 10, argv, lens, err,
                              sizeof(err));
    if (r == NULL)
        return jn_sr_fail(s, "cannot store the connector version in Redis", err);
    freeReplyObject(r);
    return 0;
}

static int cl_connector_version_get(jn_store_t *s, const char *provider, const char *sha256,
                                    jn_store_connector_version_fn fn, void *ud)
{
    const char *argv[2] = {"HGETALL", NULL};
    const redisReply *src;
    jn_connector_version_t v;
    const char *sig, *key_id;
    char k[512];
    redisReply *r;

    if (provider == NULL || sha256 == NULL || fn == NULL)
        return jn_sr_fail(s, "connector_version_get", "provider, hash or callback is NULL");
    snprintf(k, sizeof(k), "%sjn:connv:%s:%s", jn_sr(s)->prefix, provider, sha256);
    argv[1] = k;
    if ((r = jn_sr_command(s, "cannot read the connector version from Redis", 2, argv)) == NULL)
        return -1;
    src = field(r, "source");
    if (src == NULL) {
        freeReplyObject(r);
        return 1;
    }
    sig = field_str(r, "signature");
    key_id = field_str(r, "key_id");
    memset(&v, 0, sizeof(v));
    v.provider = field_str(r, "provider");
    v.version = field_str(r, "version");
    v.name = field_str(r, "name");
    v.source_sha256 = field_str(r, "sha");
    v.source = src->str;
    v.source_len = src->len;
    v.signature = sig && *sig ? sig : NULL;
    v.key_id = key_id && *key_id ? key_id : NULL;
    v.created_ms = field_int(r, "created");
    if (v.provider == NULL || v.version == NULL || v.source_sha256 == NULL) {
        freeReplyObject(r);
        return jn_sr_fail(s, "connector_version_get", "the stored version is incomplete");
    }
    fn(ud, &v);
    freeReplyObject(r);
    return 0;
}

static int cl_connector_deploy_insert(jn_store_t *s, jn_connector_deploy_t *d)
{
    const char *argv[9];
    char deployed[24], expect[24] = "";
    redisReply *r;
    int rc = 0;

    if (!d->provider || !d->version || !d->source_sha256 || !d->action || !d->actor)
        return jn_sr_fail(s, "connector_deploy_insert",
                          "provider, version, hash, action or actor is NULL");
    if (d->deployed_ms <= 0)
        d->deployed_ms = jn_now_ms();
    snprintf(deployed, sizeof(deployed), "%" PRId64, d->deployed_ms);
    argv[1] = d->provider;
    argv[2] = d->version;
    argv[3] = d->source_sha256;
    argv[4] = d->action;
    argv[5] = d->actor;
    argv[6] = d->key_id ? d->key_id : "";
    argv[7] = deployed;
    if (d->expected_live_id < 0)
        snprintf(expect, sizeof(expect), "none");
    else if (d->expected_live_id > 0)
        snprintf(expect, sizeof(expect), "%" PRId64, d->expected_live_id);
    argv[8] = expect;
    r = jn_sr_script(s, "cannot store the deploy in Redis", &deploy_insert_script, 9, argv);
    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_INTEGER)
        d->id = r->integer;
    else
        rc = jn_sr_fail(s, "connector_deploy_insert", "unexpected reply from the deploy script");
    freeReplyObject(r);
    return rc;
}

static int cl_connector_deploy_each(jn_store_t *s, const char *provider, int64_t limit,
                                    jn_store_connector_deploy_fn fn, void *ud)
{
    char idx[300], start[24], stop[24];
    const char *argv[4];
    int64_t pos = 0, seen = 0, page = limit > 0 && limit < DEPLOY_PAGE ? limit : DEPLOY_PAGE;
    redisReply *r;
    size_t n;
    int done = 0;

    if (fn == NULL)
        return jn_sr_fail(s, "connector_deploy_each", "callback is NULL");
    snprintf(idx, sizeof(idx), "jn:cdeploys%s%s", provider ? ":" : "", provider ? provider : "");
    do {
        snprintf(start, sizeof(start), "%" PRId64, pos);
        snprintf(stop, sizeof(stop), "%" PRId64, pos + page - 1);
        argv[1] = idx;
        argv[2] = start;
        argv[3] = stop;
        r = jn_sr_script(s, "cannot read the deploy history from Redis", &deploy_page_script, 4,
                         argv);
        if (r == NULL)
            return -1;
        n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
        rows_each(r, fn, ud, &seen, limit, &done);
        freeReplyObject(r);
        pos += page;
    } while ((int64_t)n == page && !done);
    return 0;
}

static int cl_connector_deploy_get(jn_store_t *s, int64_t id, jn_store_connector_deploy_fn fn,
                                   void *ud)
{
    const char *argv[2] = {"HGETALL", NULL};
    jn_connector_deploy_t d;
    char k[300];
    redisReply *r;
    int rc;

    if (fn == NULL)
        return jn_sr_fail(s, "connector_deploy_get", "callback is NULL");
    snprintf(k, sizeof(k), "%sjn:cdeploy:%" PRId64, jn_sr(s)->prefix, id);
    argv[1] = k;
    if ((r = jn_sr_command(s, "cannot read the deploy from Redis", 2, argv)) == NULL)
        return -1;
    rc = row_fill(r, &d);
    if (rc == 0)
        fn(ud, &d);
    freeReplyObject(r);
    return rc;
}

static int cl_connector_live_each(jn_store_t *s, jn_store_connector_deploy_fn fn, void *ud)
{
    const char *argv[1];
    int64_t seen = 0;
    redisReply *r;
    int stop = 0;

    if (fn == NULL)
        return jn_sr_fail(s, "connector_live_each", "callback is NULL");
    r = jn_sr_script(s, "cannot read the live connector versions from Redis", &live_script, 1,
                     argv);
    if (r == NULL)
        return -1;
    rows_each(r, fn, ud, &seen, 0, &stop);
    freeReplyObject(r);
    return 0;
}

static int cl_connector_deploy_last(jn_store_t *s, int64_t *id)
{
    const char *argv[2] = {"GET", NULL};
    char k[300];
    redisReply *r;

    *id = 0;
    jn_sr_key(s, k, sizeof(k), "jn:cdeploy:seq", NULL);
    argv[1] = k;
    if ((r = jn_sr_command(s, "cannot read the last deploy id from Redis", 2, argv)) == NULL)
        return -1;
    if (r->type == REDIS_REPLY_STRING)
        *id = strtoll(r->str, NULL, 10);
    freeReplyObject(r);
    return 0;
}

int jn_store_redis_deploy_channel(const jn_store_t *store, char *buf, size_t len)
{
    if (!jn_store_is_redis(store) || buf == NULL || len == 0)
        return -1;
    if ((size_t)snprintf(buf, len, "%s" CHANNEL, ((const jn_sr_cluster_t *)store->ops)->prefix) >=
        len)
        return -1;
    return 0;
}

void jn_sr_connector_ops(jn_store_ops_t *ops)
{
    ops->connector_version_put = cl_connector_version_put;
    ops->connector_version_get = cl_connector_version_get;
    ops->connector_deploy_insert = cl_connector_deploy_insert;
    ops->connector_deploy_each = cl_connector_deploy_each;
    ops->connector_deploy_get = cl_connector_deploy_get;
    ops->connector_live_each = cl_connector_live_each;
    ops->connector_deploy_last = cl_connector_deploy_last;
}
