/* The cluster store's integrations, organization keys, credentials, audit log
 * and API tokens (see store_redis_internal.h), in Redis so that every node
 * sees what any node wrote: an integration added through one node's CLI or
 * API is scheduled by every scheduler and run by whichever worker claims it,
 * a credential put on one node is decrypted by a job on another.
 *
 * Keys (after the prefix of the options); every row is a hash, every listing
 * a sorted set, so that a page of a listing is one script:
 *
 *   jn:integ:{id}              integration (fields: see INTEG_*)
 *   jn:integs                  ids, by id (all scores 0: ZRANGEBYLEX)
 *   jn:integs:rev              ids scored by revision (the scheduler's refresh)
 *   jn:integ:revision          the last revision given (INCR: one counter for the
 *                              cluster, so "revision > last seen" is exact on every node)
 *   jn:orgkey:{org}#{ver:020}  wrapped data key; jn:orgkeys:{org} its versions,
 *                              jn:keyorgs the organizations that have keys
 *   jn:cred:{id}#{ver:020}     credential version (ciphertext only);
 *                              jn:creds:{org} members "{id}#{ver:020}"
 *   jn:audit:{seq}, jn:audit   audit entries, and their seqs scored by seq;
 *   jn:audit:last              hash {seq, hash} of the newest entry
 *   jn:apitoken:{id}           API token (salted hash only); jn:apitokens:{org},
 *                              jn:apitokorgs (the token cache's jn:token:{...} keys are
 *                              another thing: sealed provider tokens)
 *
 * Blobs (nonces, wrapped keys, ciphertexts, token salts and hashes) are
 * stored as hex: Redis holds what SQLite holds, and the vault never hands the
 * store plaintext, so neither does Redis.
 *
 * Every write is one script, so a check and its write are atomic across
 * nodes (an insert that meets an existing row, a compare-and-set re-wrap, an
 * audit append that finds another node's entry in its place). They are not
 * part of the caller's store transaction: Redis applies them as they come,
 * and a rollback of the local store does not undo them. The vault's writes
 * are ordered so that this is safe (a credential after its organization's
 * key, the audit entry after the change).
 */
#include "junction/clock.h"
#include "junction/crypto.h"
#include "store_redis_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 200
#define PAGE_TEXT "200"

/* ---- scripts ------------------------------------------------------------- */

/* ARGV: prefix, index key, row key prefix (both after the prefix), "lex" or
 * "score", min (ZRANGEBYLEX / ZRANGEBYSCORE syntax), count. Returns triples:
 * member, score ("" for lex), the row's HGETALL. */
static jn_redis_block_script_t rows_script = JN_REDIS_BLOCK_SCRIPT(
    "local P = ARGV[1]\n"
    "local idx, kp, lex = P .. ARGV[2], P .. ARGV[3], ARGV[4] == 'lex'\n"
    "local r\n"
    "if lex then r = redis.call('ZRANGEBYLEX', idx, ARGV[5], '+', 'LIMIT', 0, ARGV[6])\n"
    "else r = redis.call('ZRANGEBYSCORE', idx, ARGV[5], '+inf', 'WITHSCORES', 'LIMIT', 0,"
    " ARGV[6]) end\n"
    "local out, step = {}, lex and 1 or 2\n"
    "for i = 1, #r, step do\n"
    "  out[#out + 1] = r[i]\n"
    "  out[#out + 1] = lex and '' or r[i + 1]\n"
    "  out[#out + 1] = redis.call('HGETALL', kp .. r[i])\n"
    "end\n"
    "return out\n");

/* ARGV: prefix, mode ("insert" or "upsert"), then field/value pairs (absent
 * fields are NULL; no "enabled" keeps the stored flag). Returns 1 when
 * written, 0 when an insert met an existing id or an upsert changed nothing
 * (so importing the same file again leaves revisions alone). */
static jn_redis_block_script_t integ_write_script = JN_REDIS_BLOCK_SCRIPT(
    "local P, mode = ARGV[1], ARGV[2]\n"
    "local new = {}\n"
    "for i = 3, #ARGV, 2 do new[ARGV[i]] = ARGV[i + 1] end\n"
    "local k = P .. 'jn:integ:' .. new.id\n"
    "local old = redis.call('HGETALL', k)\n"
    "if #old > 0 then\n"
    "  if mode == 'insert' then return 0 end\n"
    "  local o = {}\n"
    "  for i = 1, #old, 2 do o[old[i]] = old[i + 1] end\n"
    "  if new.enabled == nil then new.enabled = o.enabled end\n"
    "  local same = true\n"
    "  for _, f in ipairs({'org', 'provider', 'cred', 'token_env', 'scheme', 'config',\n"
    "      'schedule', 'jitter', 'priority', 'enabled', 'version'}) do\n"
    "    if o[f] ~= new[f] then same = false end\n"
    "  end\n"
    "  if same then return 0 end\n"
    "  new.created, new.last_slot = o.created, o.last_slot\n"
    "else\n"
    "  if new.enabled == nil then new.enabled = '1' end\n"
    "  new.last_slot = '0'\n"
    "end\n"
    "new.revision = tostring(redis.call('INCR', P .. 'jn:integ:revision'))\n"
    "local args = {}\n"
    "for f, v in pairs(new) do args[#args + 1] = f; args[#args + 1] = v end\n"
    "redis.call('DEL', k)\n"
    "redis.call('HSET', k, unpack(args))\n"
    "redis.call('ZADD', P .. 'jn:integs', 0, new.id)\n"
    "redis.call('ZADD', P .. 'jn:integs:rev', new.revision, new.id)\n"
    "return 1\n");

/* ARGV: prefix, id, op ("enable", "delete", "mark"), value. 1 when the
 * integration exists (and was changed), 0 when not. */
static jn_redis_block_script_t integ_op_script = JN_REDIS_BLOCK_SCRIPT(
    "local P, id, op, v = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
    "local k = P .. 'jn:integ:' .. id\n"
    "if redis.call('EXISTS', k) == 0 then return 0 end\n"
    "if op == 'mark' then\n"
    /* last_slot_ms only grows; the revision stays (not a change to schedule) */
    "  if tonumber(redis.call('HGET', k, 'last_slot') or '0') < tonumber(v) then\n"
    "    redis.call('HSET', k, 'last_slot', v)\n"
    "  end\n"
    "elseif op == 'enable' then\n"
    "  local rev = redis.call('INCR', P .. 'jn:integ:revision')\n"
    "  redis.call('HSET', k, 'enabled', v, 'updated', ARGV[5], 'revision', rev)\n"
    "  redis.call('ZADD', P .. 'jn:integs:rev', rev, id)\n"
    "else\n"
    "  redis.call('DEL', k, P .. 'jn:checkpoint:' .. id)\n"
    "  redis.call('ZREM', P .. 'jn:integs', id)\n"
    "  redis.call('ZREM', P .. 'jn:integs:rev', id)\n"
    "end\n"
    "return 1\n");

/* ARGV: prefix, row key, index key, member, score, org set key (or ""), org,
 * then field/value pairs. Inserts a row that must not exist: 1, or 0 when it
 * does. */
static jn_redis_block_script_t row_insert_script =
    JN_REDIS_BLOCK_SCRIPT("local P = ARGV[1]\n"
                          "local k = P .. ARGV[2]\n"
                          "if redis.call('EXISTS', k) == 1 then return 0 end\n"
                          "redis.call('HSET', k, unpack(ARGV, 8))\n"
                          "redis.call('ZADD', P .. ARGV[3], ARGV[5], ARGV[4])\n"
                          "if ARGV[6] ~= '' then redis.call('ZADD', P .. ARGV[6], 0, ARGV[7]) end\n"
                          "return 1\n");

/* ARGV: prefix, row key, then conditions (field, expected value; a value
 * "!x" means "not x") up to "--", then field/value pairs to set. 1 when the
 * row exists and every condition holds (and it was updated), else 0. */
static jn_redis_block_script_t row_cas_script =
    JN_REDIS_BLOCK_SCRIPT("local k = ARGV[1] .. ARGV[2]\n"
                          "if redis.call('EXISTS', k) == 0 then return 0 end\n"
                          "local i = 3\n"
                          "while ARGV[i] ~= '--' do\n"
                          "  local v, want = redis.call('HGET', k, ARGV[i]), ARGV[i + 1]\n"
                          "  if string.sub(want, 1, 1) == '!' then\n"
                          "    if v == string.sub(want, 2) then return 0 end\n"
                          "  elseif v ~= want then return 0 end\n"
                          "  i = i + 2\n"
                          "end\n"
                          "if i + 1 <= #ARGV then redis.call('HSET', k, unpack(ARGV, i + 1)) end\n"
                          "return 1\n");

/* ARGV: prefix, org, id, version (0: all). Deletes credential versions of
 * (org, id); returns how many. */
static jn_redis_block_script_t cred_delete_script = JN_REDIS_BLOCK_SCRIPT(
    "local P, org, id, ver = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
    "local idx = P .. 'jn:creds:' .. org\n"
    "local members\n"
    "if ver ~= '0' then members = {id .. '#' .. ver}\n"
    /* '$' follows '#': the range holds exactly the members "<id>#..." */
    "else members = redis.call('ZRANGEBYLEX', idx, '(' .. id .. '#', '(' .. id .. '$') end\n"
    "local n = 0\n"
    "for _, m in ipairs(members) do\n"
    "  n = n + redis.call('ZREM', idx, m)\n"
    "  redis.call('DEL', P .. 'jn:cred:' .. m)\n"
    "end\n"
    "return n\n");

/* ARGV: prefix, seq, prev hash, hash, then field/value pairs of the entry.
 * Appends only when the entry follows the newest one (seq - 1 and its hash):
 * {1}, else {0, newest seq, newest hash} and nothing written. The hash is the
 * caller's (audit.c's canonical SHA-256, which Redis cannot compute), so two
 * nodes that read the same tail race here and exactly one wins; the other
 * recomputes on the new tail (jn_audit_append retries). */
static jn_redis_block_script_t audit_append_script = JN_REDIS_BLOCK_SCRIPT(
    "local P, seq = ARGV[1], tonumber(ARGV[2])\n"
    "local last = redis.call('HMGET', P .. 'jn:audit:last', 'seq', 'hash')\n"
    "local lseq, lhash = tonumber(last[1] or '0'), last[2] or string.rep('0', 64)\n"
    "if seq ~= lseq + 1 or ARGV[3] ~= lhash then return {0, lseq, lhash} end\n"
    "redis.call('HSET', P .. 'jn:audit:' .. ARGV[2], unpack(ARGV, 5))\n"
    "redis.call('ZADD', P .. 'jn:audit', seq, ARGV[2])\n"
    "redis.call('HSET', P .. 'jn:audit:last', 'seq', ARGV[2], 'hash', ARGV[4])\n"
    "return {1}\n");

/* ---- helpers --------------------------------------------------------------- */

/* The value of field `name` in HGETALL pairs, or NULL. */
static const char *hv(const redisReply *pairs, const char *name)
{
    size_t i;

    for (i = 0; i + 1 < pairs->elements; i += 2)
        if (pairs->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(pairs->element[i]->str, name) == 0 &&
            pairs->element[i + 1]->type == REDIS_REPLY_STRING)
            return pairs->element[i + 1]->str;
    return NULL;
}

static int64_t hv_int(const redisReply *pairs, const char *name)
{
    const char *v = hv(pairs, name);

    return v ? strtoll(v, NULL, 10) : 0;
}

/* An integer reply's value, or -1 with the store's error set. */
static int64_t int_reply(jn_store_t *s, const char *what, redisReply *r)
{
    int64_t v = -1;

    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else
        jn_sr_fail(s, what, "unexpected reply from Redis");
    freeReplyObject(r);
    return v;
}

/* Runs a script whose reply is an integer: the integer, or -1. */
static int64_t script_int(jn_store_t *s, const char *what, jn_redis_block_script_t *sc, int argc,
                          const char **argv)
{
    return int_reply(s, what, jn_sr_script(s, what, sc, argc, argv));
}

typedef int (*row_fn)(void *ud, const char *member, const redisReply *pairs);

/* Walks an index page by page (see rows_script), calling fn for every row
 * that exists; fn returning non-zero stops (a success). `min` is where the
 * walk starts ("-" or "(<member>" for lex, "<score>" or "(<score>" else). */
static int rows_each(jn_store_t *s, const char *what, const char *index, const char *keyprefix,
                     int lex, const char *min, row_fn fn, void *ud)
{
    const char *argv[7];
    char from[1100];
    redisReply *r;
    size_t i, n;
    int stop = 0;

    if (strlen(min) >= sizeof(from))
        return jn_sr_fail(s, what, "listing cursor too long");
    snprintf(from, sizeof(from), "%s", min);
    do {
        argv[1] = index;
        argv[2] = keyprefix;
        argv[3] = lex ? "lex" : "score";
        argv[4] = from;
        argv[5] = PAGE_TEXT;
        if ((r = jn_sr_script(s, what, &rows_script, 6, argv)) == NULL)
            return -1;
        n = r->type == REDIS_REPLY_ARRAY ? r->elements / 3 : 0;
        for (i = 0; i < n && !stop; i++) {
            redisReply *m = r->element[3 * i], *sc = r->element[3 * i + 1],
                       *h = r->element[3 * i + 2];
            if (m->type != REDIS_REPLY_STRING || sc->type != REDIS_REPLY_STRING)
                continue;
            if (strlen(m->str) + 2 > sizeof(from)) {
                freeReplyObject(r);
                return jn_sr_fail(s, what, "listing member too long");
            }
            snprintf(from, sizeof(from), "(%s", lex ? m->str : sc->str);
            if (h->type == REDIS_REPLY_ARRAY && h->elements > 0)
                stop = fn(ud, m->str, h) != 0;
        }
        freeReplyObject(r);
    } while (n == PAGE && !stop);
    return 0;
}

/* Copies the strings at `fields` (NULL ones stay NULL) into one block. */
static char *copy_strings(const char **const *fields, size_t n)
{
    size_t i, total = 1, len;
    char *block, *p;

    for (i = 0; i < n; i++)
        if (*fields[i] != NULL)
            total += strlen(*fields[i]) + 1;
    if ((block = p = malloc(total)) == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        if (*fields[i] == NULL)
            continue;
        len = strlen(*fields[i]);
        memcpy(p, *fields[i], len + 1);
        *fields[i] = p;
        p += len + 1;
    }
    *p = '\0';
    return block;
}

/* A blob as hex (malloc'ed; "" for an empty one), or NULL (out of memory). */
static char *hex_of(const uint8_t *p, size_t len)
{
    char *out = malloc(2 * len + 1);

    if (out == NULL)
        return NULL;
    if (len > 0)
        jn_hex_encode(p, len, out);
    out[2 * len] = '\0';
    return out;
}

/* Decodes a hex field into *out (malloc'ed, at least one byte); 0 or -1. */
static int unhex(const char *hex, uint8_t **out, size_t *len)
{
    size_t n = hex ? strlen(hex) : 0;
    long got;

    *len = 0;
    if ((*out = malloc(n / 2 + 1)) == NULL)
        return -1;
    if (n == 0)
        return 0;
    if ((got = jn_hex_decode(hex, n, *out)) < 0) {
        free(*out);
        *out = NULL;
        return -1;
    }
    *len = (size_t)got;
    return 0;
}

/* ---- integrations -------------------------------------------------------- */

static int integ_check(jn_store_t *s, const char *op, const jn_integration_t *it)
{
    if (it->id == NULL || it->organization_id == NULL || it->provider == NULL ||
        it->config_json == NULL || it->schedule == NULL || it->priority == NULL)
        return jn_sr_fail(s, op, "a required field is NULL");
    if (it->credential_id != NULL && it->token_env != NULL)
        return jn_sr_fail(s, op, "credential_id and token_env exclude each other");
    if (strlen(it->id) > 256)
        return jn_sr_fail(s, op, "the id is longer than 256 bytes");
    if (strcmp(it->priority, "high") != 0 && strcmp(it->priority, "normal") != 0 &&
        strcmp(it->priority, "low") != 0)
        return jn_sr_fail(s, op, "priority must be high, normal or low");
    if (it->jitter_ms < 0)
        return jn_sr_fail(s, op, "jitter_ms must not be negative");
    return 0;
}

/* insert (upsert 0) or upsert: 1 written, 0 not, -1 failed. */
static int integ_write(jn_store_t *s, const jn_integration_t *it, int upsert)
{
    const char *op = upsert ? "integration_upsert" : "integration_insert";
    const char *argv[2 + 2 * 14];
    char jitter[24], created[24], updated[24];
    int64_t now = jn_now_ms();
    int argc = 2;

#define PAIR(name, value)                                                                          \
    do {                                                                                           \
        if ((value) != NULL) {                                                                     \
            argv[argc++] = (name);                                                                 \
            argv[argc++] = (value);                                                                \
        }                                                                                          \
    } while (0)

    if (integ_check(s, op, it) != 0)
        return -1;
    snprintf(jitter, sizeof(jitter), "%" PRId64, it->jitter_ms);
    snprintf(created, sizeof(created), "%" PRId64, it->created_ms > 0 ? it->created_ms : now);
    snprintf(updated, sizeof(updated), "%" PRId64, it->updated_ms > 0 ? it->updated_ms : now);
    argv[1] = upsert ? "upsert" : "insert";
    PAIR("id", it->id);
    PAIR("org", it->organization_id);
    PAIR("provider", it->provider);
    PAIR("cred", it->credential_id);
    PAIR("token_env", it->token_env);
    PAIR("scheme", it->auth_scheme);
    PAIR("config", it->config_json);
    PAIR("schedule", it->schedule);
    PAIR("jitter", jitter);
    PAIR("priority", it->priority);
    if (!upsert || it->enabled >= 0)
        PAIR("enabled", it->enabled ? "1" : "0");
    PAIR("version", it->connector_version);
    PAIR("created", created);
    PAIR("updated", updated);
#undef PAIR
    return (int)script_int(s, op, &integ_write_script, argc, argv);
}

static int cl_integration_insert(jn_store_t *s, const jn_integration_t *it)
{
    int rc = integ_write(s, it, 0);

    return rc < 0 ? -1 : rc == 1 ? 0 : 1;
}

static int cl_integration_upsert(jn_store_t *s, const jn_integration_t *it, int *changed)
{
    int rc;

    if (changed != NULL)
        *changed = 0;
    if ((rc = integ_write(s, it, 1)) < 0)
        return -1;
    if (changed != NULL)
        *changed = rc;
    return 0;
}

/* An integration pointing into the reply. */
static void integ_fill(const redisReply *h, jn_integration_t *it)
{
    memset(it, 0, sizeof(*it));
    it->id = hv(h, "id");
    it->organization_id = hv(h, "org");
    it->provider = hv(h, "provider");
    it->credential_id = hv(h, "cred");
    it->token_env = hv(h, "token_env");
    it->auth_scheme = hv(h, "scheme");
    it->config_json = hv(h, "config");
    it->schedule = hv(h, "schedule");
    it->jitter_ms = hv_int(h, "jitter");
    it->priority = hv(h, "priority");
    it->enabled = (int)hv_int(h, "enabled");
    it->connector_version = hv(h, "version");
    it->created_ms = hv_int(h, "created");
    it->updated_ms = hv_int(h, "updated");
    it->revision = hv_int(h, "revision");
    it->last_slot_ms = hv_int(h, "last_slot");
}

static int cl_integration_get(jn_store_t *s, const char *id, jn_integration_t *out, char **strings)
{
    const char *argv[2] = {"HGETALL", NULL};
    const char **fields[] = {
        &out->id,        &out->organization_id,  &out->provider,    &out->credential_id,
        &out->token_env, &out->auth_scheme,      &out->config_json, &out->schedule,
        &out->priority,  &out->connector_version};
    char k[512];
    redisReply *r;
    int rc = 1;

    *strings = NULL;
    memset(out, 0, sizeof(*out));
    if (id == NULL)
        return jn_sr_fail(s, "integration_get", "id is NULL");
    if (strlen(id) > 256)
        return 1;
    jn_sr_key(s, k, sizeof(k), "jn:integ:", id);
    argv[1] = k;
    if ((r = jn_sr_command(s, "integration_get", 2, argv)) == NULL)
        return -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        integ_fill(r, out);
        if (out->id == NULL) {
            rc = jn_sr_fail(s, "integration_get", "a stored integration has no id");
        } else if ((*strings = copy_strings(fields, sizeof(fields) / sizeof(fields[0]))) == NULL) {
            memset(out, 0, sizeof(*out));
            rc = jn_sr_fail(s, "integration_get", "out of memory");
        } else {
            rc = 0;
        }
    }
    freeReplyObject(r);
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

typedef struct {
    const jn_integration_filter_t *f;
    jn_store_integration_fn fn;
    void *ud;
} integ_walk_t;

static int opt_match(const char *want, const char *have)
{
    return want == NULL || (have != NULL && strcmp(want, have) == 0);
}

static int integ_row(void *ud, const char *member, const redisReply *h)
{
    integ_walk_t *w = ud;
    jn_integration_t it;

    (void)member;
    integ_fill(h, &it);
    if (it.id == NULL || !opt_match(w->f->organization_id, it.organization_id) ||
        !opt_match(w->f->provider, it.provider) ||
        !opt_match(w->f->credential_id, it.credential_id) ||
        (w->f->enabled >= 0 && it.enabled != (w->f->enabled != 0)))
        return 0;
    return w->fn(w->ud, &it);
}

static int cl_integration_each(jn_store_t *s, const jn_integration_filter_t *f,
                               jn_store_integration_fn fn, void *ud)
{
    static const jn_integration_filter_t all = {NULL, NULL, -1, 0, NULL};
    integ_walk_t w = {f ? f : &all, fn, ud};
    char min[32];

    if (w.f->after_revision > 0) {
        /* the scheduler's refresh: only what changed, in revision order */
        snprintf(min, sizeof(min), "(%" PRId64, w.f->after_revision);
        return rows_each(s, "integration_each", "jn:integs:rev", "jn:integ:", 0, min, integ_row,
                         &w);
    }
    return rows_each(s, "integration_each", "jn:integs", "jn:integ:", 1, "-", integ_row, &w);
}

static int integ_op(jn_store_t *s, const char *what, const char *id, const char *op,
                    const char *value)
{
    const char *argv[6];
    char now[24];
    int64_t rc;

    if (id == NULL)
        return jn_sr_fail(s, what, "id is NULL");
    if (strlen(id) > 256)
        return 1;
    snprintf(now, sizeof(now), "%" PRId64, jn_now_ms());
    argv[1] = id;
    argv[2] = op;
    argv[3] = value;
    argv[4] = now;
    rc = script_int(s, what, &integ_op_script, 5, argv);
    return rc < 0 ? -1 : rc == 1 ? 0 : 1;
}

static int cl_integration_set_enabled(jn_store_t *s, const char *id, int enabled)
{
    return integ_op(s, "integration_set_enabled", id, "enable", enabled ? "1" : "0");
}

/* Removed from both indexes: the refresh of another node's scheduler does not
 * see it again, and its entry there is dropped when it next fires (the
 * lookup by id finds nothing), as in the embedded store. */
static int cl_integration_delete(jn_store_t *s, const char *id)
{
    return integ_op(s, "integration_delete", id, "delete", "");
}

static int cl_integration_mark_slot(jn_store_t *s, const char *id, int64_t slot_ms)
{
    char v[24];

    snprintf(v, sizeof(v), "%" PRId64, slot_ms);
    return integ_op(s, "integration_mark_slot", id, "mark", v);
}

/* ---- organization keys --------------------------------------------------- */

/* A required id: present and of a sane length. */
static int check_id(jn_store_t *s, const char *what, const char *id)
{
    if (id == NULL)
        return jn_sr_fail(s, what, "a required id is NULL");
    if (strlen(id) > 256)
        return jn_sr_fail(s, what, "an id is longer than 256 bytes");
    return 0;
}

static int check_ids(jn_store_t *s, const char *what, const char *a, const char *b)
{
    return check_id(s, what, a) != 0 || check_id(s, what, b) != 0 ? -1 : 0;
}

static int cl_org_key_insert(jn_store_t *s, const jn_org_key_t *key)
{
    const char *argv[8 + 14];
    char row[600], idx[300], member[24], created[24];
    char *nonce = NULL, *wrapped = NULL;
    int64_t rc = -1;
    int argc = 8;

    if (check_ids(s, "org_key_insert", key->org_id, key->master_key_id) != 0)
        return -1;
    if (key->dek_version <= 0)
        return jn_sr_fail(s, "org_key_insert", "dek_version must be positive");
    snprintf(member, sizeof(member), "%020" PRId64, key->dek_version);
    snprintf(row, sizeof(row), "jn:orgkey:%s#%s", key->org_id, member);
    snprintf(idx, sizeof(idx), "jn:orgkeys:%s", key->org_id);
    snprintf(created, sizeof(created), "%" PRId64, key->created_ms);
    nonce = hex_of(key->nonce, key->nonce_len);
    wrapped = hex_of(key->wrapped, key->wrapped_len);
    if (nonce == NULL || wrapped == NULL) {
        jn_sr_fail(s, "org_key_insert", "out of memory");
        goto done;
    }
    argv[1] = row;
    argv[2] = idx;
    argv[3] = member;
    argv[4] = "0";
    argv[5] = "jn:keyorgs";
    argv[6] = key->org_id;
    argv[7] = "org";
    argv[argc++] = key->org_id;
    argv[argc++] = "ver";
    argv[argc++] = member;
    argv[argc++] = "mk";
    argv[argc++] = key->master_key_id;
    argv[argc++] = "nonce";
    argv[argc++] = nonce;
    argv[argc++] = "wrapped";
    argv[argc++] = wrapped;
    argv[argc++] = "created";
    argv[argc++] = created;
    argv[argc++] = "state";
    argv[argc++] = key->state ? key->state : "current";
    rc = script_int(s, "org_key_insert", &row_insert_script, argc, argv);
    if (rc == 0)
        jn_sr_fail(s, "org_key_insert", "this organization's key version exists");
done:
    free(nonce);
    free(wrapped);
    return rc == 1 ? 0 : -1;
}

static int cl_org_key_rewrap(jn_store_t *s, const jn_org_key_t *key, const char *old_master_key_id)
{
    const char *argv[16];
    char row[600];
    char *nonce, *wrapped;
    int64_t rc = -1;

    if (check_ids(s, "org_key_rewrap", key->org_id, key->master_key_id) != 0 ||
        check_id(s, "org_key_rewrap", old_master_key_id) != 0)
        return -1;
    snprintf(row, sizeof(row), "jn:orgkey:%s#%020" PRId64, key->org_id, key->dek_version);
    nonce = hex_of(key->nonce, key->nonce_len);
    wrapped = hex_of(key->wrapped, key->wrapped_len);
    if (nonce != NULL && wrapped != NULL) {
        const char *a[] = {NULL,      row,       "mk",   old_master_key_id,  "state",
                           "current", "--",      "mk",   key->master_key_id, "nonce",
                           nonce,     "wrapped", wrapped};
        memcpy(argv, a, sizeof(a));
        rc =
            script_int(s, "org_key_rewrap", &row_cas_script, (int)(sizeof(a) / sizeof(a[0])), argv);
    } else {
        jn_sr_fail(s, "org_key_rewrap", "out of memory");
    }
    free(nonce);
    free(wrapped);
    return rc < 0 ? -1 : rc == 1 ? 0 : 1;
}

static int cl_org_key_retire(jn_store_t *s, const char *org_id, int64_t dek_version)
{
    char row[600];
    const char *argv[] = {NULL, row, "--", "state", "retired", "nonce", "", "wrapped", ""};
    int64_t rc;

    if (check_id(s, "org_key_retire", org_id) != 0)
        return -1;
    snprintf(row, sizeof(row), "jn:orgkey:%s#%020" PRId64, org_id, dek_version);
    rc = script_int(s, "org_key_retire", &row_cas_script, (int)(sizeof(argv) / sizeof(argv[0])),
                    argv);
    return rc < 0 ? -1 : rc == 1 ? 0 : 1;
}

typedef struct {
    jn_store_t *s;
    jn_store_org_key_fn fn;
    void *ud;
    int failed;
    int stopped; /* the callback asked to stop: no further organization either */
} org_key_walk_t;

static int org_key_row(void *ud, const char *member, const redisReply *h)
{
    org_key_walk_t *w = ud;
    jn_org_key_t k = {0};
    uint8_t *nonce = NULL, *wrapped = NULL;
    int stop;

    (void)member;
    k.org_id = hv(h, "org");
    k.dek_version = hv_int(h, "ver");
    k.master_key_id = hv(h, "mk");
    k.created_ms = hv_int(h, "created");
    k.state = hv(h, "state");
    if (k.org_id == NULL || k.master_key_id == NULL || k.state == NULL ||
        unhex(hv(h, "nonce"), &nonce, &k.nonce_len) != 0 ||
        unhex(hv(h, "wrapped"), &wrapped, &k.wrapped_len) != 0) {
        free(nonce);
        w->failed = jn_sr_fail(w->s, "org_key_each", "a stored organization key is malformed");
        return 1;
    }
    k.nonce = nonce;
    k.wrapped = wrapped;
    stop = w->fn(w->ud, &k);
    free(nonce);
    free(wrapped);
    w->stopped |= stop != 0;
    return stop;
}

static int org_keys_of(jn_store_t *s, const char *org, org_key_walk_t *w)
{
    char idx[300], kp[320];

    if (strlen(org) > 256)
        return 0;
    snprintf(idx, sizeof(idx), "jn:orgkeys:%s", org);
    snprintf(kp, sizeof(kp), "jn:orgkey:%s#", org);
    return rows_each(s, "org_key_each", idx, kp, 1, "-", org_key_row, w);
}

/* The organizations set has members, not rows: walked with ZRANGEBYLEX. */
static int org_names_each(jn_store_t *s, const char *what, const char *set,
                          int (*fn)(jn_store_t *, const char *, void *), void *ud)
{
    const char *argv[7] = {"ZRANGEBYLEX", NULL, NULL, "+", "LIMIT", "0", PAGE_TEXT};
    char key[300], from[300] = "-";
    redisReply *r;
    size_t i, n;
    int rc = 0;

    jn_sr_key(s, key, sizeof(key), set, NULL);
    do {
        argv[1] = key;
        argv[2] = from;
        if ((r = jn_sr_command(s, what, 7, argv)) == NULL)
            return -1;
        n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
        for (i = 0; i < n && rc == 0; i++) {
            if (r->element[i]->type != REDIS_REPLY_STRING || r->element[i]->len > 256)
                continue;
            snprintf(from, sizeof(from), "(%s", r->element[i]->str);
            rc = fn(s, r->element[i]->str, ud);
        }
        freeReplyObject(r);
    } while (n == PAGE && rc == 0);
    return rc < 0 ? -1 : 0;
}

/* 0 go on, 1 stop, -1 failed */
static int org_keys_cb(jn_store_t *s, const char *org, void *ud)
{
    org_key_walk_t *w = ud;

    if (org_keys_of(s, org, w) != 0 || w->failed)
        return -1;
    return w->stopped;
}

static int cl_org_key_each(jn_store_t *s, const char *org_id, jn_store_org_key_fn fn, void *ud)
{
    org_key_walk_t w = {s, fn, ud, 0, 0};

    if (org_id != NULL)
        return org_keys_of(s, org_id, &w) != 0 || w.failed ? -1 : 0;
    return org_names_each(s, "org_key_each", "jn:keyorgs", org_keys_cb, &w);
}

/* ---- credentials ------------------------------------------------------------ */

static int cl_credential_insert(jn_store_t *s, const jn_credential_record_t *c)
{
    const char *argv[7 + 26];
    char member[300], row[320], idx[300], ver[24], dek[24], created[24], rotated[24];
    char *nonce = NULL, *ct = NULL;
    int64_t rc = -1;
    int argc = 7;

    if (check_ids(s, "credential_insert", c->id, c->org_id) != 0)
        return -1;
    if (c->provider == NULL || c->auth_type == NULL || c->state == NULL || c->version <= 0)
        return jn_sr_fail(s, "credential_insert", "a required field is missing");
    snprintf(member, sizeof(member), "%s#%020" PRId64, c->id, c->version);
    snprintf(row, sizeof(row), "jn:cred:%s", member);
    snprintf(idx, sizeof(idx), "jn:creds:%s", c->org_id);
    snprintf(ver, sizeof(ver), "%" PRId64, c->version);
    snprintf(dek, sizeof(dek), "%" PRId64, c->dek_version);
    snprintf(created, sizeof(created), "%" PRId64, c->created_ms);
    snprintf(rotated, sizeof(rotated), "%" PRId64, c->rotated_ms);
    nonce = hex_of(c->nonce, c->nonce_len);
    ct = hex_of(c->ciphertext, c->ciphertext_len);
    if (nonce == NULL || ct == NULL) {
        jn_sr_fail(s, "credential_insert", "out of memory");
        goto done;
    }
    argv[1] = row;
    argv[2] = idx;
    argv[3] = member;
    argv[4] = "0";
    argv[5] = "";
    argv[6] = "";
    {
        const char *pairs[] = {
            "id",  c->id, "org",     c->org_id, "provider", c->provider, "auth",  c->auth_type,
            "ver", ver,   "state",   c->state,  "dek",      dek,         "nonce", nonce,
            "ct",  ct,    "created", created,   "rotated",  rotated};
        memcpy(argv + argc, pairs, sizeof(pairs));
        argc += (int)(sizeof(pairs) / sizeof(pairs[0]));
    }
    if (c->metadata_json != NULL) {
        argv[argc++] = "meta";
        argv[argc++] = c->metadata_json;
    }
    rc = script_int(s, "credential_insert", &row_insert_script, argc, argv);
    if (rc == 0)
        jn_sr_fail(s, "credential_insert", "this credential version exists");
done:
    free(nonce);
    free(ct);
    return rc == 1 ? 0 : -1;
}

static int cl_credential_reencrypt(jn_store_t *s, const jn_credential_record_t *c,
                                   int64_t old_dek_version)
{
    char row[320], old[24], dek[24];
    char *nonce, *ct;
    int64_t rc = -1;

    if (check_ids(s, "credential_reencrypt", c->id, c->org_id) != 0)
        return -1;
    snprintf(row, sizeof(row), "jn:cred:%s#%020" PRId64, c->id, c->version);
    snprintf(old, sizeof(old), "%" PRId64, old_dek_version);
    snprintf(dek, sizeof(dek), "%" PRId64, c->dek_version);
    nonce = hex_of(c->nonce, c->nonce_len);
    ct = hex_of(c->ciphertext, c->ciphertext_len);
    if (nonce != NULL && ct != NULL) {
        const char *argv[] = {NULL,  row, "org",   c->org_id, "dek", old, "--",
                              "dek", dek, "nonce", nonce,     "ct",  ct};
        rc = script_int(s, "credential_reencrypt", &row_cas_script,
                        (int)(sizeof(argv) / sizeof(argv[0])), argv);
    } else {
        jn_sr_fail(s, "credential_reencrypt", "out of memory");
    }
    free(nonce);
    free(ct);
    return rc < 0 ? -1 : rc == 1 ? 0 : 1;
}

static int cl_credential_set_state(jn_store_t *s, const char *org_id, const char *id,
                                   int64_t version, const char *state, int64_t rotated_ms)
{
    char row[320], rotated[24];
    const char *argv[] = {NULL, row, "org", org_id, "--", "state", state, "rotated", rotated};
    int argc = (int)(sizeof(argv) / sizeof(argv[0]));
    int64_t rc;

    if (check_ids(s, "credential_set_state", id, org_id) != 0)
        return -1;
    if (state == NULL)
        return jn_sr_fail(s, "credential_set_state", "state is NULL");
    snprintf(row, sizeof(row), "jn:cred:%s#%020" PRId64, id, version);
    snprintf(rotated, sizeof(rotated), "%" PRId64, rotated_ms);
    if (rotated_ms <= 0)
        argc -= 2; /* keeps the time it was rotated before */
    rc = script_int(s, "credential_set_state", &row_cas_script, argc, argv);
    return rc < 0 ? -1 : rc == 1 ? 0 : 1;
}

static int cl_credential_delete(jn_store_t *s, const char *org_id, const char *id, int64_t version)
{
    char ver[24];
    const char *argv[] = {NULL, org_id, id, ver};
    int64_t rc;

    if (check_ids(s, "credential_delete", id, org_id) != 0)
        return -1;
    if (version > 0)
        snprintf(ver, sizeof(ver), "%020" PRId64, version);
    else
        snprintf(ver, sizeof(ver), "0");
    rc = script_int(s, "credential_delete", &cred_delete_script, 4, argv);
    return rc < 0 ? -1 : rc > 0 ? 0 : 1;
}

typedef struct {
    jn_store_t *s;
    const jn_credential_filter_t *f;
    jn_store_credential_fn fn;
    void *ud;
    int failed;
} cred_walk_t;

static int cred_row(void *ud, const char *member, const redisReply *h)
{
    cred_walk_t *w = ud;
    const jn_credential_filter_t *f = w->f;
    jn_credential_record_t c = {0};
    uint8_t *nonce = NULL, *ct = NULL;
    int stop;

    (void)member;
    c.id = hv(h, "id");
    c.org_id = hv(h, "org");
    c.provider = hv(h, "provider");
    c.auth_type = hv(h, "auth");
    c.version = hv_int(h, "ver");
    c.state = hv(h, "state");
    c.dek_version = hv_int(h, "dek");
    c.metadata_json = hv(h, "meta");
    c.created_ms = hv_int(h, "created");
    c.rotated_ms = hv_int(h, "rotated");
    if (c.id == NULL || c.org_id == NULL || c.state == NULL)
        return 0;
    if (f->id != NULL && strcmp(f->id, c.id) != 0)
        return 1; /* past the id's versions (the walk started at them, in order) */
    if ((f->version != 0 && f->version != c.version) || !opt_match(f->state, c.state) ||
        (f->dek_version != 0 && f->dek_version != c.dek_version) ||
        (f->dek_version_not != 0 && f->dek_version_not == c.dek_version))
        return 0;
    if (unhex(hv(h, "nonce"), &nonce, &c.nonce_len) != 0 ||
        unhex(hv(h, "ct"), &ct, &c.ciphertext_len) != 0) {
        free(nonce);
        w->failed = jn_sr_fail(w->s, "credential_each", "a stored credential is malformed");
        return 1;
    }
    c.nonce = nonce;
    c.ciphertext = ct;
    stop = w->fn(w->ud, &c);
    free(nonce);
    free(ct);
    return stop;
}

static int cl_credential_each(jn_store_t *s, const jn_credential_filter_t *f,
                              jn_store_credential_fn fn, void *ud)
{
    cred_walk_t w = {s, f, fn, ud, 0};
    char idx[300], min[300] = "-";

    if (f == NULL || check_id(s, "credential_each", f->org_id) != 0)
        return f == NULL ? jn_sr_fail(s, "credential_each", "no filter") : -1;
    snprintf(idx, sizeof(idx), "jn:creds:%s", f->org_id);
    if (f->id != NULL) {
        if (strlen(f->id) > 256)
            return 0;
        snprintf(min, sizeof(min), "(%s#", f->id); /* starts at the id's versions */
    }
    if (rows_each(s, "credential_each", idx, "jn:cred:", 1, min, cred_row, &w) != 0)
        return -1;
    return w.failed ? -1 : 0;
}

/* ---- audit log ------------------------------------------------------------------ */

static int cl_audit_insert(jn_store_t *s, const jn_audit_record_t *rec)
{
    const char *argv[5 + 18];
    char seq[24], ts[24];
    redisReply *r;
    int argc = 5, rc = -1;

    if (rec->prev_hash == NULL || rec->hash == NULL || rec->actor == NULL || rec->action == NULL)
        return jn_sr_fail(s, "audit_insert", "a required field is NULL");
    snprintf(seq, sizeof(seq), "%" PRId64, rec->seq);
    snprintf(ts, sizeof(ts), "%" PRId64, rec->ts_ms);
    argv[1] = seq;
    argv[2] = rec->prev_hash;
    argv[3] = rec->hash;
    argv[4] = "seq";
    argv[argc++] = seq;
    argv[argc++] = "ts";
    argv[argc++] = ts;
    argv[argc++] = "actor";
    argv[argc++] = rec->actor;
    argv[argc++] = "action";
    argv[argc++] = rec->action;
    argv[argc++] = "prev";
    argv[argc++] = rec->prev_hash;
    argv[argc++] = "hash";
    argv[argc++] = rec->hash;
    if (rec->org_id != NULL) {
        argv[argc++] = "org";
        argv[argc++] = rec->org_id;
    }
    if (rec->credential_id != NULL) {
        argv[argc++] = "cred";
        argv[argc++] = rec->credential_id;
    }
    if (rec->detail_json != NULL) {
        argv[argc++] = "detail";
        argv[argc++] = rec->detail_json;
    }
    if ((r = jn_sr_script(s, "audit_insert", &audit_append_script, argc, argv)) == NULL)
        return -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        r->element[0]->type == REDIS_REPLY_INTEGER)
        rc = r->element[0]->integer == 1 ? 0 : 1;
    else
        jn_sr_fail(s, "audit_insert", "unexpected reply from Redis");
    freeReplyObject(r);
    if (rc == 1)
        /* another node appended first: the caller reads the tail again */
        jn_sr_fail(s, "audit_insert", "another entry took this place in the chain");
    return rc;
}

static int cl_audit_last(jn_store_t *s, int64_t *seq, char hash[65])
{
    const char *argv[4] = {"HMGET", NULL, "seq", "hash"};
    char k[300];
    redisReply *r;
    int rc = 1;

    *seq = 0;
    hash[0] = '\0';
    jn_sr_key(s, k, sizeof(k), "jn:audit:last", NULL);
    argv[1] = k;
    if ((r = jn_sr_command(s, "audit_last", 4, argv)) == NULL)
        return -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING &&
        r->element[1]->len == 64) {
        *seq = strtoll(r->element[0]->str, NULL, 10);
        memcpy(hash, r->element[1]->str, 65);
        rc = 0;
    }
    freeReplyObject(r);
    return rc;
}

typedef struct {
    jn_store_audit_fn fn;
    void *ud;
} audit_walk_t;

static int audit_row(void *ud, const char *member, const redisReply *h)
{
    audit_walk_t *w = ud;
    jn_audit_record_t rec = {0};

    (void)member;
    rec.seq = hv_int(h, "seq");
    rec.ts_ms = hv_int(h, "ts");
    rec.actor = hv(h, "actor");
    rec.action = hv(h, "action");
    rec.org_id = hv(h, "org");
    rec.credential_id = hv(h, "cred");
    rec.detail_json = hv(h, "detail");
    rec.prev_hash = hv(h, "prev");
    rec.hash = hv(h, "hash");
    return w->fn(w->ud, &rec);
}

static int cl_audit_each(jn_store_t *s, int64_t from_seq, jn_store_audit_fn fn, void *ud)
{
    audit_walk_t w = {fn, ud};
    char min[24];

    snprintf(min, sizeof(min), "%" PRId64, from_seq);
    return rows_each(s, "audit_each", "jn:audit", "jn:audit:", 0, min, audit_row, &w);
}

/* ---- API tokens ---------------------------------------------------------------- */

static int cl_api_token_insert(jn_store_t *s, const jn_api_token_t *t)
{
    char row[300], idx[300], created[24], revoked[24];
    char *salt = NULL, *hash = NULL;
    const char *argv[7 + 16];
    int64_t rc = -1;
    int argc = 7;

    if (check_ids(s, "api_token_insert", t->id, t->organization_id) != 0)
        return -1;
    if (t->scope == NULL || (strcmp(t->scope, "read") != 0 && strcmp(t->scope, "write") != 0))
        return jn_sr_fail(s, "api_token_insert", "scope must be read or write");
    snprintf(row, sizeof(row), "jn:apitoken:%s", t->id);
    snprintf(idx, sizeof(idx), "jn:apitokens:%s", t->organization_id);
    snprintf(created, sizeof(created), "%" PRId64, t->created_ms > 0 ? t->created_ms : jn_now_ms());
    snprintf(revoked, sizeof(revoked), "%" PRId64, t->revoked_ms);
    salt = hex_of(t->salt, t->salt_len);
    hash = hex_of(t->hash, t->hash_len);
    if (salt == NULL || hash == NULL) {
        jn_sr_fail(s, "api_token_insert", "out of memory");
        goto done;
    }
    argv[1] = row;
    argv[2] = idx;
    argv[3] = t->id;
    argv[4] = "0";
    argv[5] = "jn:apitokorgs";
    argv[6] = t->organization_id;
    {
        const char *pairs[] = {
            "id", t->id,  "org", t->organization_id, "scope", t->scope,  "salt",
            salt, "hash", hash,  "created",          created, "revoked", revoked};
        memcpy(argv + argc, pairs, sizeof(pairs));
        argc += (int)(sizeof(pairs) / sizeof(pairs[0]));
    }
    if (t->label != NULL) {
        argv[argc++] = "label";
        argv[argc++] = t->label;
    }
    rc = script_int(s, "api_token_insert", &row_insert_script, argc, argv);
    if (rc == 0)
        jn_sr_fail(s, "api_token_insert", "a token with this id exists");
done:
    free(salt);
    free(hash);
    return rc == 1 ? 0 : -1;
}

typedef struct {
    jn_store_t *s;
    jn_store_api_token_fn fn;
    void *ud;
    int failed;
    int stopped;
} token_walk_t;

static int token_row(void *ud, const char *member, const redisReply *h)
{
    token_walk_t *w = ud;
    jn_api_token_t t = {0};
    uint8_t *salt = NULL, *hash = NULL;
    int stop;

    (void)member;
    t.id = hv(h, "id");
    t.organization_id = hv(h, "org");
    t.scope = hv(h, "scope");
    t.label = hv(h, "label");
    t.created_ms = hv_int(h, "created");
    t.revoked_ms = hv_int(h, "revoked");
    if (t.id == NULL || t.organization_id == NULL || t.scope == NULL ||
        unhex(hv(h, "salt"), &salt, &t.salt_len) != 0 ||
        unhex(hv(h, "hash"), &hash, &t.hash_len) != 0) {
        free(salt);
        w->failed = jn_sr_fail(w->s, "api_token", "a stored token is malformed");
        return 1;
    }
    t.salt = salt;
    t.hash = hash;
    stop = w->fn(w->ud, &t);
    free(salt);
    free(hash);
    w->stopped |= stop != 0;
    return stop;
}

static int cl_api_token_get(jn_store_t *s, const char *id, jn_store_api_token_fn fn, void *ud)
{
    const char *argv[2] = {"HGETALL", NULL};
    token_walk_t w = {s, fn, ud, 0, 0};
    char k[512];
    redisReply *r;
    int rc = 1;

    if (id == NULL)
        return jn_sr_fail(s, "api_token_get", "id is NULL");
    if (strlen(id) > 256)
        return 1;
    jn_sr_key(s, k, sizeof(k), "jn:apitoken:", id);
    argv[1] = k;
    if ((r = jn_sr_command(s, "api_token_get", 2, argv)) == NULL)
        return -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        token_row(&w, id, r);
        rc = w.failed ? -1 : 0;
    }
    freeReplyObject(r);
    return rc;
}

static int tokens_of(jn_store_t *s, const char *org, void *ud)
{
    token_walk_t *w = ud;
    char idx[300];

    snprintf(idx, sizeof(idx), "jn:apitokens:%s", org);
    if (rows_each(s, "api_token_each", idx, "jn:apitoken:", 1, "-", token_row, w) != 0 || w->failed)
        return -1;
    return w->stopped;
}

static int cl_api_token_each(jn_store_t *s, const char *org, jn_store_api_token_fn fn, void *ud)
{
    token_walk_t w = {s, fn, ud, 0, 0};

    if (org != NULL)
        return strlen(org) > 256 || tokens_of(s, org, &w) >= 0 ? 0 : -1;
    return org_names_each(s, "api_token_each", "jn:apitokorgs", tokens_of, &w);
}

static int cl_api_token_revoke(jn_store_t *s, const char *id, int64_t now_ms)
{
    char row[300], now[24];
    const char *argv[] = {NULL, row, "revoked", "0", "--", "revoked", now};
    int64_t rc;

    if (check_id(s, "api_token_revoke", id) != 0)
        return -1;
    snprintf(row, sizeof(row), "jn:apitoken:%s", id);
    snprintf(now, sizeof(now), "%" PRId64, now_ms > 0 ? now_ms : jn_now_ms());
    rc = script_int(s, "api_token_revoke", &row_cas_script, (int)(sizeof(argv) / sizeof(argv[0])),
                    argv);
    return rc < 0 ? -1 : rc == 1 ? 0 : 1;
}

void jn_sr_tenancy_ops(jn_store_ops_t *ops)
{
    ops->integration_insert = cl_integration_insert;
    ops->integration_upsert = cl_integration_upsert;
    ops->integration_get = cl_integration_get;
    ops->integration_each = cl_integration_each;
    ops->integration_set_enabled = cl_integration_set_enabled;
    ops->integration_delete = cl_integration_delete;
    ops->integration_mark_slot = cl_integration_mark_slot;
    ops->org_key_insert = cl_org_key_insert;
    ops->org_key_rewrap = cl_org_key_rewrap;
    ops->org_key_retire = cl_org_key_retire;
    ops->org_key_each = cl_org_key_each;
    ops->credential_insert = cl_credential_insert;
    ops->credential_reencrypt = cl_credential_reencrypt;
    ops->credential_set_state = cl_credential_set_state;
    ops->credential_delete = cl_credential_delete;
    ops->credential_each = cl_credential_each;
    ops->audit_insert = cl_audit_insert;
    ops->audit_last = cl_audit_last;
    ops->audit_each = cl_audit_each;
    ops->api_token_insert = cl_api_token_insert;
    ops->api_token_get = cl_api_token_get;
    ops->api_token_each = cl_api_token_each;
    ops->api_token_revoke = cl_api_token_revoke;
}
