/* The cluster store (see store_redis.h): Redis attached to a local store.
 *
 * Attaching copies the store's operations table into this object and
 * replaces the entries that go to Redis; the store then points at the copy.
 * Every operation the store gains later keeps working, on the store itself,
 * without a change here. The replaced operations reach this object from the
 * store pointer alone: the table is the object's first member.
 */
#include "junction/store_redis.h"
#include "junction/error.h"
#include "store_redis_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_RETENTION_MS (7LL * 24 * 3600 * 1000)
#define DEFAULT_DEDUP_TTL_MS (24LL * 3600 * 1000)
#define RECORDS_PAGE 200
#define EVIDENCE_PAGE 500

/* ---- scripts ---------------------------------------------------------- */

/* ARGV: prefix, dedup ttl, number of checkpoints, (integration, cursor)...,
 * then EVIDENCE_FIELDS per item. Returns the number of items added. */
static jn_redis_block_script_t commit_script = JN_REDIS_BLOCK_SCRIPT(
    "local P, ttl, ncp = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local stream = P .. 'evidence.raw'\n"
    "local added, runs = 0, {}\n"
    "for i = 4 + 2 * ncp, #ARGV, 11 do\n"
    "  local id, run = ARGV[i], ARGV[i + 7]\n"
    "  local dk = P .. 'jn:evrun:' .. run\n"
    "  runs[dk] = true\n"
    /* the run's dedup set: an item emitted again by a retried attempt (same
     * run id, so same item id) is not added to the stream twice. Redis does
     * not undo what a script wrote before an error, so every write goes in
     * the order that errs on the safe side: the item before its dedup mark
     * (a failure between them repeats it, never loses it), the cursor after
     * every item (never ahead of the evidence it covers). */
    /* the run's checksums by resource, for change detection: written for
     * every item (a retried attempt writes the same values again) */
    "  local sk = P .. 'jn:evsum:' .. run\n"
    "  runs[sk] = true\n"
    "  redis.call('HSET', sk, ARGV[i + 4] .. '\\n' .. ARGV[i + 5], ARGV[i + 9])\n"
    "  if redis.call('SISMEMBER', dk, id) == 0 then\n"
    "    redis.call('XADD', stream, '*', 'id', id, 'organization_id', ARGV[i + 1],\n"
    "      'integration_id', ARGV[i + 2], 'provider_type', ARGV[i + 3],\n"
    "      'resource_type', ARGV[i + 4], 'resource_id', ARGV[i + 5],\n"
    "      'collected_at', ARGV[i + 6], 'run_id', run, 'connector_version', ARGV[i + 8],\n"
    "      'checksum', ARGV[i + 9], 'data', ARGV[i + 10])\n"
    "    redis.call('SADD', dk, id)\n"
    "    added = added + 1\n"
    "  end\n"
    "end\n"
    "for dk in pairs(runs) do redis.call('PEXPIRE', dk, ttl) end\n"
    "for i = 4, 3 + 2 * ncp, 2 do\n"
    "  redis.call('SET', P .. 'jn:checkpoint:' .. ARGV[i], ARGV[i + 1])\n"
    "end\n"
    "return added\n");

/* ARGV: prefix, retention, id, created, integration, initial (0/1), then
 * field/value pairs. Returns 1 when written, 0 when an initial record met an
 * existing one. */
static jn_redis_block_script_t record_put_script = JN_REDIS_BLOCK_SCRIPT(
    "local P, ttl, id, created, integ = ARGV[1], tonumber(ARGV[2]), ARGV[3],\n"
    "  tonumber(ARGV[4]), ARGV[5]\n"
    "local k = P .. 'jn:record:' .. id\n"
    "if ARGV[6] == '1' and redis.call('EXISTS', k) == 1 then return 0 end\n"
    "redis.call('DEL', k)\n"
    "redis.call('HSET', k, unpack(ARGV, 7))\n"
    "redis.call('PEXPIRE', k, ttl)\n"
    "local idx = {P .. 'jn:records'}\n"
    "if integ ~= '' then idx[2] = P .. 'jn:records:' .. integ end\n"
    "for _, x in ipairs(idx) do\n"
    "  redis.call('ZADD', x, 'NX', created, id)\n"
    "  redis.call('ZREMRANGEBYSCORE', x, '-inf', '(' .. (created - ttl))\n"
    "  redis.call('PEXPIRE', x, ttl)\n"
    "end\n"
    "return 1\n");

/* ARGV: prefix, index key (after the prefix), start, stop. The records of
 * that page of the index, newest first (ids whose record expired are dropped
 * from the index). */
static jn_redis_block_script_t records_page_script = JN_REDIS_BLOCK_SCRIPT(
    "local P, idx = ARGV[1], ARGV[1] .. ARGV[2]\n"
    "local out = {}\n"
    "for _, id in ipairs(redis.call('ZREVRANGE', idx, ARGV[3], ARGV[4])) do\n"
    "  local h = redis.call('HGETALL', P .. 'jn:record:' .. id)\n"
    "  if #h == 0 then redis.call('ZREM', idx, id) else out[#out + 1] = h end\n"
    "end\n"
    "return out\n");

/* ---- commands ----------------------------------------------------------- */

int jn_sr_fail(jn_store_t *s, const char *what, const char *why)
{
    snprintf(s->errmsg, sizeof(s->errmsg), "%s: %.440s", what, why);
    return -1;
}

redisReply *jn_sr_command(jn_store_t *s, const char *what, int argc, const char **argv)
{
    char err[512];
    redisReply *r = jn_redis_block_command(jn_sr(s)->conn, argc, argv, NULL, err, sizeof(err));

    if (r == NULL)
        jn_sr_fail(s, what, err);
    return r;
}

redisReply *jn_sr_script(jn_store_t *s, const char *what, jn_redis_block_script_t *sc, int argc,
                         const char **argv)
{
    char err[512];
    redisReply *r;

    argv[0] = jn_sr(s)->prefix;
    r = jn_redis_block_script(jn_sr(s)->conn, sc, 0, argc, argv, NULL, err, sizeof(err));
    if (r == NULL)
        jn_sr_fail(s, what, err);
    return r;
}

void jn_sr_key(jn_store_t *s, char *buf, size_t len, const char *a, const char *b)
{
    snprintf(buf, len, "%s%s%s", jn_sr(s)->prefix, a, b ? b : "");
}

/* ---- transactions and the evidence sink ---------------------------------- */

static void buffer_clear(jn_sr_cluster_t *c)
{
    size_t i;

    for (i = 0; i < c->nitems * EVIDENCE_FIELDS; i++)
        free(c->items[i]);
    c->nitems = 0;
    for (i = 0; i < c->ncps * 2; i++)
        free(c->cps[i]);
    free(c->cps);
    c->cps = NULL;
    c->ncps = 0;
}

/* Writes the given items and checkpoints in one script. *added: items new to
 * the stream. */
static int write_batch(jn_store_t *s, char **items, size_t nitems, char **cps, size_t ncps,
                       int64_t *added)
{
    jn_sr_cluster_t *c = jn_sr(s);
    size_t argc = 3 + 2 * ncps + nitems * EVIDENCE_FIELDS, i, n = 3;
    const char **argv;
    char ttl[24], ncp[16];
    redisReply *r;
    int rc = -1;

    if (nitems == 0 && ncps == 0)
        return 0;
    if ((argv = calloc(argc, sizeof(*argv))) == NULL)
        return jn_sr_fail(s, "evidence", "out of memory");
    snprintf(ttl, sizeof(ttl), "%" PRId64, c->dedup_ttl_ms);
    snprintf(ncp, sizeof(ncp), "%zu", ncps);
    argv[1] = ttl;
    argv[2] = ncp;
    for (i = 0; i < ncps * 2; i++)
        argv[n++] = cps[i];
    for (i = 0; i < nitems * EVIDENCE_FIELDS; i++)
        argv[n++] = items[i];
    r = jn_sr_script(s, "cannot write evidence to the evidence.raw stream", &commit_script,
                     (int)argc, argv);
    free(argv);
    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_INTEGER) {
        if (added != NULL)
            *added = r->integer;
        rc = 0;
    } else {
        jn_sr_fail(s, "evidence", "unexpected reply from the commit script");
    }
    freeReplyObject(r);
    return rc;
}

static int cl_begin(jn_store_t *s)
{
    jn_sr_cluster_t *c = jn_sr(s);
    int rc = c->orig->begin(s);

    if (rc == 0) {
        buffer_clear(c);
        c->in_tx = 1;
    }
    return rc;
}

static int cl_commit(jn_store_t *s)
{
    jn_sr_cluster_t *c = jn_sr(s);

    /* the evidence and the cursor first: when Redis refuses, the caller rolls
     * back and nothing of the transaction is kept anywhere */
    if (write_batch(s, c->items, c->nitems, c->cps, c->ncps, NULL) != 0)
        return -1;
    buffer_clear(c);
    c->in_tx = 0;
    return c->orig->commit(s);
}

static int cl_rollback(jn_store_t *s)
{
    jn_sr_cluster_t *c = jn_sr(s);

    buffer_clear(c);
    c->in_tx = 0;
    return c->orig->rollback(s);
}

static char *dup_field(const char *v)
{
    return strdup(v ? v : "");
}

static int cl_evidence_put(jn_store_t *s, const jn_evidence_t *item, int *inserted)
{
    jn_sr_cluster_t *c = jn_sr(s);
    const char *src[EVIDENCE_FIELDS] = {item->id,
                                        item->organization_id,
                                        item->integration_id,
                                        item->provider_type,
                                        item->resource_type,
                                        item->resource_id,
                                        item->collected_at,
                                        item->run_id,
                                        item->connector_version,
                                        item->checksum,
                                        item->data};
    char *one[EVIDENCE_FIELDS];
    char **dst;
    int64_t added = 0;
    size_t i;
    int rc, failed = 0;

    if (item->id == NULL || item->run_id == NULL || item->data == NULL)
        return jn_sr_fail(s, "evidence_put", "the item has no id, run id or data");
    if (!c->in_tx) {
        for (i = 0; i < EVIDENCE_FIELDS; i++)
            failed |= (one[i] = dup_field(src[i])) == NULL;
        rc = failed ? jn_sr_fail(s, "evidence_put", "out of memory")
                    : write_batch(s, one, 1, NULL, 0, &added);
        for (i = 0; i < EVIDENCE_FIELDS; i++)
            free(one[i]);
        if (rc == 0 && inserted != NULL)
            *inserted = added == 1;
        return rc;
    }
    if (c->nitems == c->capitems) {
        size_t cap = c->capitems ? c->capitems * 2 : 64;
        char **grown = realloc(c->items, cap * EVIDENCE_FIELDS * sizeof(*grown));
        if (grown == NULL)
            return jn_sr_fail(s, "evidence_put", "out of memory");
        c->items = grown;
        c->capitems = cap;
    }
    dst = c->items + c->nitems * EVIDENCE_FIELDS;
    for (i = 0; i < EVIDENCE_FIELDS; i++)
        failed |= (dst[i] = dup_field(src[i])) == NULL;
    c->nitems++;
    if (failed)
        return jn_sr_fail(s, "evidence_put", "out of memory");
    /* whether it is new is known at commit; the sink is idempotent on the id */
    if (inserted != NULL)
        *inserted = 1;
    return 0;
}

static int cl_checkpoint_set(jn_store_t *s, const char *integration_id, const char *cursor)
{
    jn_sr_cluster_t *c = jn_sr(s);
    char **grown, *pair[2];
    size_t i;
    int rc;

    if (integration_id == NULL || cursor == NULL)
        return jn_sr_fail(s, "checkpoint_set", "no integration or cursor");
    pair[0] = strdup(integration_id);
    pair[1] = strdup(cursor);
    if (pair[0] == NULL || pair[1] == NULL) {
        free(pair[0]);
        free(pair[1]);
        return jn_sr_fail(s, "checkpoint_set", "out of memory");
    }
    if (!c->in_tx) {
        rc = write_batch(s, NULL, 0, pair, 1, NULL);
        free(pair[0]);
        free(pair[1]);
        return rc;
    }
    for (i = 0; i < c->ncps; i++) { /* the last cursor of an integration wins */
        if (strcmp(c->cps[2 * i], integration_id) == 0) {
            free(pair[0]);
            free(c->cps[2 * i + 1]);
            c->cps[2 * i + 1] = pair[1];
            return 0;
        }
    }
    grown = realloc(c->cps, (c->ncps + 1) * 2 * sizeof(*grown));
    if (grown == NULL) {
        free(pair[0]);
        free(pair[1]);
        return jn_sr_fail(s, "checkpoint_set", "out of memory");
    }
    c->cps = grown;
    c->cps[2 * c->ncps] = pair[0];
    c->cps[2 * c->ncps + 1] = pair[1];
    c->ncps++;
    return 0;
}

static int cl_checkpoint_get(jn_store_t *s, const char *integration_id, char **cursor)
{
    const char *argv[2] = {"GET", NULL};
    char k[512];
    redisReply *r;
    int rc = 1;

    *cursor = NULL;
    jn_sr_key(s, k, sizeof(k), "jn:checkpoint:", integration_id);
    argv[1] = k;
    if ((r = jn_sr_command(s, "checkpoint_get", 2, argv)) == NULL)
        return -1;
    if (r->type == REDIS_REPLY_STRING) {
        *cursor = strdup(r->str);
        rc = *cursor ? 0 : jn_sr_fail(s, "checkpoint_get", "out of memory");
    }
    freeReplyObject(r);
    return rc;
}

/* ---- reading evidence.raw back ------------------------------------------ */

/* An entry's fields as an item (pointers into the reply). */
static void entry_item(const redisReply *fields, jn_evidence_t *e)
{
    static const char *const names[EVIDENCE_FIELDS] = {
        "id",          "organization_id", "integration_id", "provider_type",     "resource_type",
        "resource_id", "collected_at",    "run_id",         "connector_version", "checksum",
        "data"};
    const char **dst[EVIDENCE_FIELDS] = {&e->id,
                                         &e->organization_id,
                                         &e->integration_id,
                                         &e->provider_type,
                                         &e->resource_type,
                                         &e->resource_id,
                                         &e->collected_at,
                                         &e->run_id,
                                         &e->connector_version,
                                         &e->checksum,
                                         &e->data};
    size_t i, k;

    memset(e, 0, sizeof(*e));
    for (i = 0; i + 1 < fields->elements; i += 2)
        for (k = 0; k < EVIDENCE_FIELDS; k++)
            if (fields->element[i]->type == REDIS_REPLY_STRING &&
                strcmp(fields->element[i]->str, names[k]) == 0)
                *dst[k] = fields->element[i + 1]->str;
}

typedef int (*entry_fn)(void *ud, const jn_evidence_t *item);

/* Walks evidence.raw from `start` ("-" or "<ms>-0"), oldest first, calling fn
 * for the items that match; fn returning non-zero stops (a success). */
static int scan_evidence(jn_store_t *s, const char *start, const char *integration_id,
                         const char *run_id, entry_fn fn, void *ud)
{
    const char *argv[6];
    char stream[256], from[64];
    redisReply *r;
    size_t i, n;
    int stop = 0;

    jn_sr_key(s, stream, sizeof(stream), "evidence.raw", NULL);
    snprintf(from, sizeof(from), "%s", start);
    do {
        argv[0] = "XRANGE";
        argv[1] = stream;
        argv[2] = from;
        argv[3] = "+";
        argv[4] = "COUNT";
        argv[5] = "500";
        if ((r = jn_sr_command(s, "reading evidence.raw", 6, argv)) == NULL)
            return -1;
        n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
        for (i = 0; i < n && !stop; i++) {
            redisReply *entry = r->element[i];
            jn_evidence_t e;
            if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
                entry->element[0]->type != REDIS_REPLY_STRING)
                continue;
            snprintf(from, sizeof(from), "(%s", entry->element[0]->str);
            if (entry->element[1]->type != REDIS_REPLY_ARRAY)
                continue;
            entry_item(entry->element[1], &e);
            if (e.id == NULL)
                continue;
            if (integration_id != NULL &&
                (e.integration_id == NULL || strcmp(e.integration_id, integration_id) != 0))
                continue;
            if (run_id != NULL && (e.run_id == NULL || strcmp(e.run_id, run_id) != 0))
                continue;
            stop = fn(ud, &e) != 0;
        }
        freeReplyObject(r);
    } while (n == EVIDENCE_PAGE && !stop);
    return 0;
}

static int count_cb(void *ud, const jn_evidence_t *item)
{
    (void)item;
    (*(int64_t *)ud)++;
    return 0;
}

static int cl_evidence_count(jn_store_t *s, const char *integration_id, int64_t *count)
{
    *count = 0;
    return scan_evidence(s, "-", integration_id, NULL, count_cb, count);
}

static int cl_evidence_each(jn_store_t *s, const char *integration_id, jn_store_evidence_fn fn,
                            void *ud)
{
    return scan_evidence(s, "-", integration_id, NULL, fn, ud);
}

static int cl_evidence_export(jn_store_t *s, const jn_evidence_filter_t *f, jn_store_evidence_fn fn,
                              void *ud)
{
    char start[32] = "-";

    /* stream entry ids begin with the time they were added */
    if (f != NULL && f->stored_since_ms > 0)
        snprintf(start, sizeof(start), "%" PRId64 "-0", f->stored_since_ms);
    return scan_evidence(s, start, f ? f->integration_id : NULL, f ? f->run_id : NULL, fn, ud);
}

static int cl_run_evidence_count(jn_store_t *s, const char *run_id, int64_t *count)
{
    const char *argv[2] = {"SCARD", NULL};
    char k[512];
    redisReply *r;

    *count = 0;
    jn_sr_key(s, k, sizeof(k), "jn:evrun:", run_id);
    argv[1] = k;
    if ((r = jn_sr_command(s, "run_evidence_count", 2, argv)) == NULL)
        return -1;
    if (r->type == REDIS_REPLY_INTEGER)
        *count = r->integer;
    freeReplyObject(r);
    return 0;
}

/* ARGV: prefix, job (run) id, integration id, complete (0/1), retention.
 * Compares the run's checksums (jn:evsum:{run}, kept by the commit script)
 * with the integration's inventory (jn:inv:{integration}: resource ->
 * checksum of its latest complete run, jn:invbase:{integration} naming that
 * run) and lists the differences in jn:changes:{job} (members
 * "<change>\n<resource type>\n<resource id>", kept for the retention). A
 * complete run then becomes the inventory. Returns {added, changed, removed,
 * baseline}; a first run counts everything as added and lists nothing, a
 * partial one (complete 0) reports no removals and leaves the inventory. */
static jn_redis_block_script_t changes_script = JN_REDIS_BLOCK_SCRIPT(
    "local P, job, integ, complete, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1',\n"
    "  tonumber(ARGV[5])\n"
    "local sk, inv, bk = P .. 'jn:evsum:' .. job, P .. 'jn:inv:' .. integ,\n"
    "  P .. 'jn:invbase:' .. integ\n"
    "local ck = P .. 'jn:changes:' .. job\n"
    "local base = redis.call('GET', bk)\n"
    "if base == job then\n"
    /* computed again for the run that is the inventory already: what was
     * recorded the first time stands */
    "  local r = redis.call('HMGET', ck .. ':counts', 'added', 'changed', 'removed', 'base')\n"
    "  if r[1] then return {tonumber(r[1]), tonumber(r[2]), tonumber(r[3]), r[4]} end\n"
    "end\n"
    "redis.call('DEL', ck, ck .. ':counts')\n"
    "local cur = redis.call('HGETALL', sk)\n"
    "local added, changed, removed = 0, 0, -1\n"
    "if not base or base == job then\n"
    "  added, changed, removed, base = #cur / 2, 0, 0, ''\n"
    "else\n"
    "  local now = {}\n"
    "  for i = 1, #cur, 2 do\n"
    "    local k, sum = cur[i], cur[i + 1]\n"
    "    now[k] = true\n"
    "    local was = redis.call('HGET', inv, k)\n"
    "    if not was then\n"
    "      added = added + 1\n"
    "      redis.call('ZADD', ck, 0, 'added\\n' .. k)\n"
    "    elseif was ~= sum then\n"
    "      changed = changed + 1\n"
    "      redis.call('ZADD', ck, 0, 'changed\\n' .. k)\n"
    "    end\n"
    "  end\n"
    "  if complete then\n"
    "    removed = 0\n"
    "    for _, k in ipairs(redis.call('HKEYS', inv)) do\n"
    "      if not now[k] then\n"
    "        removed = removed + 1\n"
    "        redis.call('ZADD', ck, 0, 'removed\\n' .. k)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if removed < 0 then removed = 0 end\n"
    "if redis.call('EXISTS', ck) == 1 then redis.call('PEXPIRE', ck, ttl) end\n"
    "redis.call('HSET', ck .. ':counts', 'added', added, 'changed', changed, 'removed', removed,\n"
    "  'base', base)\n"
    "redis.call('PEXPIRE', ck .. ':counts', ttl)\n"
    "if complete then\n"
    /* the run becomes the inventory: a copy, since its checksums expire
     * with the dedup set while the next run may be a week away */
    "  redis.call('DEL', inv)\n"
    "  for i = 1, #cur, 1000 do\n"
    "    redis.call('HSET', inv, unpack(cur, i, math.min(i + 999, #cur)))\n"
    "  end\n"
    "  redis.call('SET', bk, job)\n"
    "end\n"
    "return {added, changed, removed, base}\n");

/* ARGV: prefix, job id, min, max, limit ("" for all). The members of the
 * job's changes in that range. */
static jn_redis_block_script_t changes_list_script = JN_REDIS_BLOCK_SCRIPT(
    "local k = ARGV[1] .. 'jn:changes:' .. ARGV[2]\n"
    "if ARGV[5] == '' then return redis.call('ZRANGEBYLEX', k, ARGV[3], ARGV[4]) end\n"
    "return redis.call('ZRANGEBYLEX', k, ARGV[3], ARGV[4], 'LIMIT', 0, ARGV[5])\n");

static int cl_job_changes_compute(jn_store_t *s, const char *job_id, const char *integration_id,
                                  int complete, jn_job_changes_t *out)
{
    const char *argv[5];
    char ttl[24];
    redisReply *r;
    int rc = -1;
    size_t i;

    memset(out, 0, sizeof(*out));
    if (job_id == NULL || integration_id == NULL)
        return jn_sr_fail(s, "job_changes_compute", "job or integration id is NULL");
    if (strlen(job_id) > 256 || strlen(integration_id) > 256)
        return jn_sr_fail(s, "job_changes_compute", "an id is longer than 256 bytes");
    snprintf(ttl, sizeof(ttl), "%" PRId64, jn_sr(s)->retention_ms);
    argv[1] = job_id;
    argv[2] = integration_id;
    argv[3] = complete ? "1" : "0";
    argv[4] = ttl;
    if ((r = jn_sr_script(s, "job_changes_compute", &changes_script, 5, argv)) == NULL)
        return -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 4) {
        int64_t *dst[3] = {&out->added, &out->changed, &out->removed};
        rc = 0;
        for (i = 0; i < 3; i++) {
            if (r->element[i]->type != REDIS_REPLY_INTEGER)
                rc = -1;
            else
                *dst[i] = r->element[i]->integer;
        }
        if (r->element[3]->type == REDIS_REPLY_STRING)
            snprintf(out->baseline_job_id, sizeof(out->baseline_job_id), "%s", r->element[3]->str);
    }
    freeReplyObject(r);
    if (rc != 0) {
        memset(out, 0, sizeof(*out));
        return jn_sr_fail(s, "job_changes_compute", "unexpected reply from Redis");
    }
    return 0;
}

static int cl_job_changes_each(jn_store_t *s, const char *job_id, const char *change, int64_t limit,
                               jn_store_change_fn fn, void *ud)
{
    const char *argv[5];
    char min[32] = "-", max[32] = "+", lim[24] = "";
    redisReply *r;
    size_t i;
    int stop = 0;

    if (job_id == NULL)
        return jn_sr_fail(s, "job_changes_each", "job id is NULL");
    if (strlen(job_id) > 256)
        return 0;
    if (change != NULL) {
        if (strcmp(change, "added") != 0 && strcmp(change, "changed") != 0 &&
            strcmp(change, "removed") != 0)
            return jn_sr_fail(s, "job_changes_each", "change must be added, changed or removed");
        /* "\v" follows "\n": the range holds exactly "<change>\n..." */
        snprintf(min, sizeof(min), "[%s\n", change);
        snprintf(max, sizeof(max), "(%s\v", change);
    }
    if (limit > 0)
        snprintf(lim, sizeof(lim), "%" PRId64, limit);
    argv[1] = job_id;
    argv[2] = min;
    argv[3] = max;
    argv[4] = lim;
    if ((r = jn_sr_script(s, "job_changes_each", &changes_list_script, 5, argv)) == NULL)
        return -1;
    for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements && !stop; i++) {
        char *m, *t, *id;
        jn_job_change_t c;
        if (r->element[i]->type != REDIS_REPLY_STRING)
            continue;
        m = r->element[i]->str;
        if ((t = strchr(m, '\n')) == NULL || (id = strchr(t + 1, '\n')) == NULL)
            continue;
        *t++ = '\0';
        *id++ = '\0';
        c.change = m;
        c.resource_type = t;
        c.resource_id = id;
        stop = fn(ud, &c) != 0;
    }
    freeReplyObject(r);
    return 0;
}

/* ---- job records ---------------------------------------------------------- */

enum {
    R_ID,
    R_ORG,
    R_INTEG,
    R_PROV,
    R_VER,
    R_KIND,
    R_STATUS,
    R_ERROR,
    R_PRIO,
    R_TRIGGER,
    R_SLOT,
    R_BASELINE,
    R_NSTR,
    /* numbers */
    R_CREATED = R_NSTR,
    R_STARTED,
    R_FINISHED,
    R_ITEMS,
    R_PAGES,
    R_ATTEMPTS,
    R_MAX,
    R_RETRY,
    R_ADDED,
    R_CHANGED,
    R_REMOVED,
    R_NFIELDS
};

static const char *const record_fields[R_NFIELDS] = {
    "id",    "org",      "integ", "prov",     "ver",     "kind",    "status",   "error",
    "prio",  "trigger",  "slot",  "baseline", "created", "started", "finished", "items",
    "pages", "attempts", "max",   "retry_at", "added",   "changed", "removed"};

static int cl_job_put(jn_store_t *s, const jn_job_record_t *j)
{
    const char *strs[R_NSTR] = {j->id,
                                j->organization_id,
                                j->integration_id,
                                j->provider_type,
                                j->connector_version,
                                j->kind,
                                jn_job_status_name(j->status),
                                j->error,
                                j->priority,
                                j->trigger,
                                j->slot_id,
                                j->baseline_job_id};
    int64_t nums[R_NFIELDS - R_NSTR] = {
        j->created_ms,   j->started_ms,  j->finished_ms, j->items,   j->pages,  j->attempts,
        j->max_attempts, j->retry_at_ms, j->added,       j->changed, j->removed};
    char numbuf[R_NFIELDS - R_NSTR][24], ttl[24];
    const char *argv[6 + 2 * R_NFIELDS];
    int argc = 6, i;
    redisReply *r;

    if (j->id == NULL || *j->id == '\0')
        return jn_sr_fail(s, "job_put", "the record has no id");
    snprintf(ttl, sizeof(ttl), "%" PRId64, jn_sr(s)->retention_ms);
    for (i = 0; i < R_NFIELDS - R_NSTR; i++)
        snprintf(numbuf[i], sizeof(numbuf[i]), "%" PRId64, nums[i]);
    argv[1] = ttl;
    argv[2] = j->id;
    argv[3] = numbuf[0]; /* created */
    argv[4] = j->integration_id ? j->integration_id : "";
    argv[5] = j->status == JN_JOB_QUEUED && j->attempts == 0 && j->started_ms == 0 ? "1" : "0";
    for (i = 0; i < R_NSTR; i++) {
        if (strs[i] == NULL)
            continue;
        argv[argc++] = record_fields[i];
        argv[argc++] = strs[i];
    }
    for (i = R_NSTR; i < R_NFIELDS; i++) {
        argv[argc++] = record_fields[i];
        argv[argc++] = numbuf[i - R_NSTR];
    }
    if ((r = jn_sr_script(s, "cannot record the job", &record_put_script, argc, argv)) == NULL)
        return -1;
    freeReplyObject(r);
    return 0;
}

/* A record from HGETALL pairs; its strings copied into one block (*strings). */
static int record_fill(const redisReply *pairs, jn_job_record_t *out, char **strings)
{
    const char *vals[R_NFIELDS] = {0};
    const char **dst[R_NSTR] = {&out->id,
                                &out->organization_id,
                                &out->integration_id,
                                &out->provider_type,
                                &out->connector_version,
                                &out->kind,
                                NULL,
                                &out->error,
                                &out->priority,
                                &out->trigger,
                                &out->slot_id,
                                &out->baseline_job_id};
    int64_t *nums[R_NFIELDS - R_NSTR] = {&out->created_ms,
                                         &out->started_ms,
                                         &out->finished_ms,
                                         &out->items,
                                         &out->pages,
                                         NULL,
                                         NULL,
                                         &out->retry_at_ms,
                                         &out->added,
                                         &out->changed,
                                         &out->removed};
    size_t i, total = 0, n;
    char *p;
    int k, st;

    memset(out, 0, sizeof(*out));
    *strings = NULL;
    for (i = 0; i + 1 < pairs->elements; i += 2)
        for (k = 0; k < R_NFIELDS; k++)
            if (pairs->element[i]->type == REDIS_REPLY_STRING &&
                strcmp(pairs->element[i]->str, record_fields[k]) == 0)
                vals[k] = pairs->element[i + 1]->str;
    if (vals[R_ID] == NULL)
        return 1;
    for (k = 0; k < R_NSTR; k++)
        total += vals[k] ? strlen(vals[k]) + 1 : 0;
    if ((*strings = p = malloc(total + 1)) == NULL)
        return -1;
    for (k = 0; k < R_NSTR; k++) {
        if (vals[k] == NULL || dst[k] == NULL)
            continue;
        n = strlen(vals[k]);
        memcpy(p, vals[k], n + 1);
        *dst[k] = p;
        p += n + 1;
    }
    st = jn_job_status_parse(vals[R_STATUS]);
    out->status = st < 0 ? JN_JOB_FAILED : (jn_job_status_t)st;
    for (k = R_NSTR; k < R_NFIELDS; k++)
        if (nums[k - R_NSTR] != NULL)
            *nums[k - R_NSTR] = vals[k] ? strtoll(vals[k], NULL, 10) : 0;
    out->attempts = vals[R_ATTEMPTS] ? atoi(vals[R_ATTEMPTS]) : 0;
    out->max_attempts = vals[R_MAX] ? atoi(vals[R_MAX]) : 0;
    if (vals[R_ADDED] == NULL)
        out->added = out->changed = out->removed = -1;
    return 0;
}

static int cl_job_get(jn_store_t *s, const char *id, jn_job_record_t *out, char **strings)
{
    const char *argv[2] = {"HGETALL", NULL};
    char k[512];
    redisReply *r;
    int rc;

    memset(out, 0, sizeof(*out));
    *strings = NULL;
    if (id == NULL || strlen(id) > 256)
        return 1;
    jn_sr_key(s, k, sizeof(k), "jn:record:", id);
    argv[1] = k;
    if ((r = jn_sr_command(s, "job_get", 2, argv)) == NULL)
        return -1;
    rc = r->type == REDIS_REPLY_ARRAY && r->elements > 0 ? record_fill(r, out, strings) : 1;
    freeReplyObject(r);
    return rc < 0 ? jn_sr_fail(s, "job_get", "out of memory") : rc;
}

static int cl_job_each(jn_store_t *s, const jn_job_filter_t *f, jn_store_job_fn fn, void *ud)
{
    char idx[300], start[24], stop[24];
    const char *argv[4];
    int64_t pos = 0, seen = 0;
    redisReply *r;
    size_t i, n;
    int done = 0;

    snprintf(idx, sizeof(idx), "jn:records%s%s", f && f->integration_id ? ":" : "",
             f && f->integration_id ? f->integration_id : "");
    do {
        snprintf(start, sizeof(start), "%" PRId64, pos);
        snprintf(stop, sizeof(stop), "%" PRId64, pos + RECORDS_PAGE - 1);
        argv[1] = idx;
        argv[2] = start;
        argv[3] = stop;
        if ((r = jn_sr_script(s, "cannot list jobs", &records_page_script, 4, argv)) == NULL)
            return -1;
        n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
        for (i = 0; i < n && !done; i++) {
            jn_job_record_t rec;
            char *strings = NULL;
            int rc = record_fill(r->element[i], &rec, &strings);
            if (rc < 0) {
                freeReplyObject(r);
                return jn_sr_fail(s, "job_each", "out of memory");
            }
            if (rc == 0 && (f == NULL || f->status == NULL ||
                            strcmp(jn_job_status_name(rec.status), f->status) == 0)) {
                done = fn(ud, &rec) != 0 || (f && f->limit > 0 && ++seen >= f->limit);
            }
            free(strings);
        }
        freeReplyObject(r);
        /* records that expired are dropped from the index as the page is read,
         * which shifts what follows: the next page starts after what was kept */
        pos += (int64_t)n;
    } while (n > 0 && !done);
    return 0;
}

/* ---- attach / detach ---------------------------------------------------- */

static void cl_close(jn_store_t *s)
{
    jn_sr_cluster_t *c = jn_sr(s);
    const jn_store_ops_t *orig = c->orig;

    buffer_clear(c);
    free(c->items);
    jn_redis_block_close(c->conn);
    s->ops = orig;
    free(c);
    orig->close(s);
}

int jn_store_attach_redis(jn_store_t *store, const char *url, const jn_store_redis_opts_t *opts,
                          char *err, size_t errlen)
{
    jn_store_redis_opts_t o = {0};
    jn_sr_cluster_t *c;

    if (store == NULL)
        return jn_errorf(err, errlen, "store: none to attach Redis to");
    if (jn_store_is_redis(store))
        return jn_errorf(err, errlen, "store: Redis is attached already");
    if (store->ops->in_transaction != NULL && store->ops->in_transaction(store) == 1)
        return jn_errorf(err, errlen, "store: cannot attach Redis inside a transaction");
    if (opts != NULL)
        o = *opts;
    if (o.prefix != NULL && strlen(o.prefix) >= sizeof(c->prefix))
        return jn_errorf(err, errlen, "store: the key prefix is longer than %zu bytes",
                         sizeof(c->prefix) - 1);
    if (o.retention_ms < 0 || o.dedup_ttl_ms < 0)
        return jn_errorf(err, errlen, "store: retention and dedup TTL must not be negative");
    if ((c = calloc(1, sizeof(*c))) == NULL)
        return jn_errorf(err, errlen, "store: out of memory");
    c->conn = jn_redis_block_open(url, &o.conn, err, errlen);
    if (c->conn == NULL) {
        free(c);
        return -1;
    }
    snprintf(c->prefix, sizeof(c->prefix), "%s", o.prefix ? o.prefix : "");
    c->retention_ms = o.retention_ms > 0 ? o.retention_ms : DEFAULT_RETENTION_MS;
    c->dedup_ttl_ms = o.dedup_ttl_ms > 0 ? o.dedup_ttl_ms : DEFAULT_DEDUP_TTL_MS;
    c->orig = store->ops;
    c->ops = *store->ops;
    c->ops.name = "sqlite+redis";
    c->ops.close = cl_close;
    c->ops.begin = cl_begin;
    c->ops.commit = cl_commit;
    c->ops.rollback = cl_rollback;
    c->ops.checkpoint_get = cl_checkpoint_get;
    c->ops.checkpoint_set = cl_checkpoint_set;
    c->ops.evidence_put = cl_evidence_put;
    c->ops.evidence_count = cl_evidence_count;
    c->ops.evidence_each = cl_evidence_each;
    c->ops.evidence_export = cl_evidence_export;
    c->ops.run_evidence_count = cl_run_evidence_count;
    c->ops.job_put = cl_job_put;
    c->ops.job_get = cl_job_get;
    c->ops.job_each = cl_job_each;
    c->ops.job_changes_compute = cl_job_changes_compute;
    c->ops.job_changes_each = cl_job_changes_each;
    jn_sr_tenancy_ops(&c->ops);
    jn_sr_connector_ops(&c->ops);
    store->ops = &c->ops;
    return 0;
}

int jn_store_is_redis(const jn_store_t *store)
{
    return store != NULL && store->ops != NULL && store->ops->close == cl_close;
}

int jn_store_redis_down(jn_store_t *store, char *why, size_t len)
{
    if (!jn_store_is_redis(store))
        return 0;
    return jn_redis_block_down(jn_sr(store)->conn, why, len);
}
